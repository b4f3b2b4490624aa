//! The daemon-agnostic observer: a raw IPv4 socket for IP protocol 112
//! (VRRP) in a namespace of its own on the lab's bridge, recording every
//! advert with the kernel's receive time (SO_TIMESTAMPNS, so the observer's
//! own scheduling under the CPU hogs does not show up as advert lag), and
//! the figures computed from that record.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

// Generic Linux values (x86_64, aarch64); libc does not export them there.
const SO_RCVBUFFORCE: libc::c_int = 33;
const SO_TIMESTAMPNS: libc::c_int = 35;
const SO_RXQ_OVFL: libc::c_int = 40;

/// One advert seen on the wire.
#[derive(Clone, Copy, Debug)]
pub struct Advert {
    /// Kernel receive time, ns since the Unix epoch.
    pub t_ns: i64,
    pub src: Ipv4Addr,
    pub vrid: u8,
    pub priority: u8,
}

/// What the observer shares with the bench while it runs.
#[derive(Default)]
pub struct Record {
    pub adverts: Mutex<Vec<Advert>>,
    /// Packets the kernel dropped on the observer's socket (SO_RXQ_OVFL).
    pub dropped: AtomicU32,
    pub stop: AtomicBool,
    pub error: Mutex<Option<String>>,
}

/// Now, as ns since the Unix epoch (the clock SO_TIMESTAMPNS uses).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn setopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> std::io::Result<()> {
    // SAFETY: value points to a live T of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs on a thread inside the observer namespace until `rec.stop`.
pub fn observe(ifname: &str, rec: &Record) {
    if let Err(e) = observe_inner(ifname, rec) {
        *rec.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
    }
}

fn observe_inner(ifname: &str, rec: &Record) -> std::io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 112) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh, valid fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let name = std::ffi::CString::new(ifname).expect("no NUL");
    // SAFETY: the pointer and length describe the NUL-terminated name.
    let rc = unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.as_bytes_with_nul().len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    let mreq = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr {
            s_addr: u32::from_ne_bytes([224, 0, 0, 18]),
        },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as libc::c_int,
    };
    setopt(&fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &mreq)?;
    setopt(&fd, libc::SOL_SOCKET, SO_TIMESTAMPNS, &1 as &libc::c_int)?;
    setopt(&fd, libc::SOL_SOCKET, SO_RXQ_OVFL, &1 as &libc::c_int)?;
    // 8 MiB: tens of thousands of adverts, should the thread be starved.
    let _ = setopt(
        &fd,
        libc::SOL_SOCKET,
        SO_RCVBUFFORCE,
        &(8 << 20) as &libc::c_int,
    );
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    setopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
    let mut buf = [0u8; 2048];
    let mut control = [0u64; 64];
    while !rec.stop.load(Ordering::Relaxed) {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is valid; the pointers set below
        // refer to live buffers of the stated sizes.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: msg describes valid buffers.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                _ => return Err(e),
            }
        }
        let mut t_ns = None;
        // SAFETY: walking the control messages recvmsg filled in.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET {
                    if (*c).cmsg_type == SO_TIMESTAMPNS {
                        let ts: libc::timespec =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        t_ns = Some(ts.tv_sec * 1_000_000_000 + ts.tv_nsec);
                    } else if (*c).cmsg_type == SO_RXQ_OVFL {
                        let d: u32 = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        rec.dropped.store(d, Ordering::Relaxed);
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let pkt = &buf[..n as usize];
        if pkt.len() < 20 {
            continue;
        }
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        let Some(vrrp) = pkt.get(ihl..) else { continue };
        if vrrp.len() < 8 || vrrp[0] >> 4 != 3 || vrrp[0] & 0x0f != 1 {
            continue;
        }
        rec.adverts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Advert {
                t_ns: t_ns.unwrap_or_else(now_ns),
                src: Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]),
                vrid: vrrp[1],
                priority: vrrp[2],
            });
    }
    Ok(())
}

/// The observer's figures for one lab over one window.
#[derive(Default, Debug)]
pub struct Figures {
    /// Non-zero-priority adverts in the window.
    pub adverts: usize,
    /// Adverts with priority 0 (a router resigning) in the window.
    pub resigns: usize,
    /// Times a router other than the last advertising one starts an
    /// advertising run (it had been silent for > 3 intervals).
    pub transitions: Vec<Transition>,
    /// Total time two routers both had a non-zero advert in their last
    /// 1.5 intervals, and in how many separate stretches.
    pub dual_ms: f64,
    pub dual_stretches: usize,
    /// Gap between consecutive adverts of the same router minus the
    /// interval, in ms, sorted. When another router started advertising
    /// during the gap (a takeover), the gap counts up to that router's
    /// first advert: the silence that let it take over. Gaps during which
    /// another router was already advertising (two masters, counted
    /// above) are left out.
    pub lags_ms: Vec<f64>,
    /// Non-zero adverts per source address.
    pub by_source: BTreeMap<Ipv4Addr, usize>,
}

impl Figures {
    pub fn lag(&self, p: f64) -> Option<f64> {
        if self.lags_ms.is_empty() {
            return None;
        }
        let i = ((p / 100.0) * self.lags_ms.len() as f64).ceil() as usize;
        Some(self.lags_ms[i.clamp(1, self.lags_ms.len()) - 1])
    }
}

/// A change of the advertising master.
#[derive(Debug, Clone)]
pub struct Transition {
    /// Seconds into the window.
    pub at_s: f64,
    pub to: Ipv4Addr,
    pub to_priority: u8,
    /// The previous master, its last advert's priority, and how long
    /// before this one it was sent (ms).
    pub from: Ipv4Addr,
    pub from_priority: u8,
    pub silent_ms: f64,
}

impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} s: {} (prio {}) after {} (prio {}) was silent {:.1} ms",
            self.at_s, self.to, self.to_priority, self.from, self.from_priority, self.silent_ms
        )
    }
}

/// Figures for `vrid` over the window `[start, end]` (ns since the epoch).
/// Adverts before `start` only serve as history (who advertised last).
pub fn analyze(adverts: &[Advert], vrid: u8, interval_ms: u64, start: i64, end: i64) -> Figures {
    let interval = interval_ms as i64 * 1_000_000;
    let mut ads: Vec<Advert> = adverts
        .iter()
        .filter(|a| a.vrid == vrid && a.t_ns <= end)
        .copied()
        .collect();
    ads.sort_by_key(|a| a.t_ns);
    let mut f = Figures::default();
    let mut last: BTreeMap<Ipv4Addr, i64> = BTreeMap::new();
    // Per router: the first advert another router sent after this
    // router's last one, and whether that other router was already
    // advertising then (its previous advert within 3 intervals of ours).
    let mut cut: BTreeMap<Ipv4Addr, (i64, bool)> = BTreeMap::new();
    let mut last_sender: Option<Advert> = None;
    // Per source, the merged stretches during which it "is master".
    let mut alive: BTreeMap<Ipv4Addr, Vec<(i64, i64)>> = BTreeMap::new();
    let hold = interval * 3 / 2;
    for a in &ads {
        let in_window = a.t_ns >= start;
        if a.priority == 0 {
            f.resigns += usize::from(in_window);
            continue;
        }
        let prev = last.get(&a.src).copied();
        let new_run = prev.is_none_or(|p| a.t_ns - p > 3 * interval);
        if in_window {
            f.adverts += 1;
            *f.by_source.entry(a.src).or_default() += 1;
            if let Some(l) = last_sender.filter(|l| new_run && l.src != a.src) {
                f.transitions.push(Transition {
                    at_s: (a.t_ns - start) as f64 / 1e9,
                    to: a.src,
                    to_priority: a.priority,
                    from: l.src,
                    from_priority: l.priority,
                    silent_ms: (a.t_ns - l.t_ns) as f64 / 1e6,
                });
            }
            if let Some(p) = prev {
                match cut.get(&a.src) {
                    // Nobody else spoke during the gap.
                    None => f.lags_ms.push((a.t_ns - p - interval) as f64 / 1e6),
                    // Someone took over during it: our silence until then.
                    Some(&(q, false)) => f.lags_ms.push((q - p - interval) as f64 / 1e6),
                    // Two masters: not a lag of ours.
                    Some(&(_, true)) => {}
                }
            }
        }
        cut.remove(&a.src);
        for (s, &t) in &last {
            if *s != a.src && !cut.contains_key(s) {
                let was_on = prev.is_some_and(|p| p >= t - 3 * interval);
                cut.insert(*s, (a.t_ns, was_on));
            }
        }
        let (s, e) = (a.t_ns.max(start), (a.t_ns + hold).min(end));
        if e > s {
            let v = alive.entry(a.src).or_default();
            match v.last_mut() {
                Some(l) if s <= l.1 => l.1 = l.1.max(e),
                _ => v.push((s, e)),
            }
        }
        last.insert(a.src, a.t_ns);
        last_sender = Some(*a);
    }
    // Sweep: time covered by two or more sources at once.
    let mut events: Vec<(i64, i32)> = alive
        .values()
        .flatten()
        .flat_map(|&(s, e)| [(s, 1), (e, -1)])
        .collect();
    events.sort();
    let (mut depth, mut since, mut total) = (0, 0i64, 0i64);
    for (t, d) in events {
        let before = depth;
        depth += d;
        if before < 2 && depth >= 2 {
            since = t;
            f.dual_stretches += 1;
        } else if before >= 2 && depth < 2 {
            total += t - since;
        }
    }
    f.dual_ms = total as f64 / 1e6;
    f.lags_ms.sort_by(f64::total_cmp);
    f
}
