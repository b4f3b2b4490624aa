//! A tiny DNS server for tests, on 127.0.0.1 (UDP), answering A and
//! AAAA questions from a table the test changes while it runs. Enough
//! of RFC 1035 §4 for a stub resolver: one question, answers that point
//! back at it, NOERROR / SERVFAIL, or silence.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

/// What the server says for a name.
#[derive(Debug, Clone)]
pub enum Answer {
    /// These addresses, with this TTL (seconds).
    Addrs(Vec<IpAddr>, u32),
    /// SERVFAIL.
    Fail,
    /// No reply at all (the resolver times out).
    Silent,
}

/// A running server; stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    names: Arc<Mutex<HashMap<String, Answer>>>,
    queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    pub async fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let names: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let queries = Arc::new(AtomicUsize::new(0));
        let (table, count) = (names.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let table = table.lock().unwrap().clone();
                if let Some(reply) = reply(&buf[..n], &table) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        DnsServer {
            addr,
            names,
            queries,
            task,
        }
    }

    /// Sets what `name` resolves to from now on.
    pub fn set(&self, name: &str, answer: Answer) {
        self.names
            .lock()
            .unwrap()
            .insert(name.trim_end_matches('.').to_ascii_lowercase(), answer);
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(query: &[u8], table: &HashMap<String, Answer>) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question_end = i + 4;
    let name = labels.join(".");
    let (rcode, addrs, ttl) = match table.get(&name) {
        Some(Answer::Silent) => return None,
        Some(Answer::Fail) => (2u8, Vec::new(), 0),
        Some(Answer::Addrs(a, ttl)) => (0, a.clone(), *ttl),
        // NXDOMAIN.
        None => (3, Vec::new(), 0),
    };
    let answers: Vec<&IpAddr> = addrs
        .iter()
        .filter(|a| match qtype {
            1 => a.is_ipv4(),
            28 => a.is_ipv6(),
            _ => false,
        })
        .collect();
    let mut out = Vec::new();
    out.extend_from_slice(&query[0..2]); // id
    out.push(0x81 | (query[2] & 0x01)); // QR, AA... and RD copied
    out.push(0x80 | rcode); // RA, rcode
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    for a in answers {
        out.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        let (rtype, data): (u16, Vec<u8>) = match a {
            IpAddr::V4(v4) => (1, v4.octets().to_vec()),
            IpAddr::V6(v6) => (28, v6.octets().to_vec()),
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    Some(out)
}
