//! Telling the LAN where the VIPs are now: gratuitous ARP for IPv4 and
//! unsolicited Neighbor Advertisements for IPv6 (RFC 5798 §6.4.1–6.4.2,
//! §8.1.2, §8.2.2), sent on becoming Master and repeated as configured.
//!
//! Frames are built with pnet's packet builders and sent from a send-only
//! AF_PACKET socket (protocol 0: the kernel delivers nothing to it). pnet's
//! datalink channels are not used: they put the NIC in promiscuous mode
//! and receive every frame.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use pnet_base::MacAddr;
use pnet_packet::Packet;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherType, EtherTypes, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{
    MutableNeighborAdvertPacket, NdpOption, NdpOptionTypes, NeighborAdvertFlags,
};
use pnet_packet::icmpv6::{Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::MutableIpv6Packet;
use socket2::{Domain, Socket, Type};

use super::error::VrrpError;
use crate::config::vrrp::GarpConfig;

const ETH_HEADER: usize = 14;
const ARP_LEN: usize = 28;
const IPV6_HEADER: usize = 40;
const NA_LEN: usize = 24 + 8; // NA + one Target Link-Layer Address option
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A gratuitous ARP as keepalived and FRR send it: an Ethernet broadcast ARP
/// *request* whose sender and target protocol addresses are both the VIP
/// (RFC 5798 §6.4.2 with errata 7947/7949; RFC 5227 §3).
pub fn gratuitous_arp(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut frame = vec![0u8; ETH_HEADER + ARP_LEN];
    let src = MacAddr::from(mac);
    {
        // Infallible: the buffer is exactly the minimum size.
        let Some(mut eth) = MutableEthernetPacket::new(&mut frame) else {
            return Vec::new();
        };
        eth.set_destination(MacAddr::broadcast());
        eth.set_source(src);
        eth.set_ethertype(EtherTypes::Arp);
    }
    if let Some(mut arp) = MutableArpPacket::new(&mut frame[ETH_HEADER..]) {
        arp.set_hardware_type(ArpHardwareTypes::Ethernet);
        arp.set_protocol_type(EtherTypes::Ipv4);
        arp.set_hw_addr_len(6);
        arp.set_proto_addr_len(4);
        arp.set_operation(ArpOperations::Request);
        arp.set_sender_hw_addr(src);
        arp.set_sender_proto_addr(vip);
        arp.set_target_hw_addr(MacAddr::broadcast());
        arp.set_target_proto_addr(vip);
    }
    frame
}

/// An unsolicited Neighbor Advertisement (RFC 4861 §7.2.6): from the VIP to
/// all-nodes, hop limit 255, Override set, Solicited clear, with our MAC as
/// Target Link-Layer Address. The Router flag stays clear: a vigil VIP is a
/// service address, not a gateway (keepalived sets it only when the host
/// forwards).
pub fn unsolicited_na(mac: [u8; 6], vip: Ipv6Addr) -> Vec<u8> {
    let mut frame = vec![0u8; ETH_HEADER + IPV6_HEADER + NA_LEN];
    let src = MacAddr::from(mac);
    {
        let Some(mut eth) = MutableEthernetPacket::new(&mut frame) else {
            return Vec::new();
        };
        // 33:33 + low 32 bits of ff02::1 (RFC 2464 §7).
        eth.set_destination(MacAddr::new(0x33, 0x33, 0, 0, 0, 1));
        eth.set_source(src);
        eth.set_ethertype(EtherTypes::Ipv6);
    }
    {
        let Some(mut ip) = MutableIpv6Packet::new(&mut frame[ETH_HEADER..]) else {
            return Vec::new();
        };
        ip.set_version(6);
        ip.set_payload_length(NA_LEN as u16);
        ip.set_next_header(IpNextHeaderProtocols::Icmpv6);
        ip.set_hop_limit(255);
        ip.set_source(vip);
        ip.set_destination(ALL_NODES);
    }
    {
        let Some(mut na) = MutableNeighborAdvertPacket::new(&mut frame[ETH_HEADER + IPV6_HEADER..])
        else {
            return Vec::new();
        };
        na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
        na.set_flags(NeighborAdvertFlags::Override);
        na.set_target_addr(vip);
        na.set_options(&[NdpOption {
            option_type: NdpOptionTypes::TargetLLAddr,
            length: 1,
            data: mac.to_vec(),
        }]);
    }
    let sum = Icmpv6Packet::new(&frame[ETH_HEADER + IPV6_HEADER..])
        .map(|p| pnet_packet::icmpv6::checksum(&p, &vip, &ALL_NODES))
        .unwrap_or(0);
    frame[ETH_HEADER + IPV6_HEADER + 2..ETH_HEADER + IPV6_HEADER + 4]
        .copy_from_slice(&sum.to_be_bytes());
    frame
}

/// The frame announcing `vip`.
pub fn frame_for(mac: [u8; 6], vip: IpAddr) -> Vec<u8> {
    match vip {
        IpAddr::V4(v4) => gratuitous_arp(mac, v4),
        IpAddr::V6(v6) => unsolicited_na(mac, v6),
    }
}

/// When to send announcement frames, relative to becoming Master: a burst
/// of `repeat` frames `interval` apart, and a second burst after `delay`
/// (keepalived's `garp_master_delay`). `refresh` repeats are scheduled by
/// the caller while Master.
pub fn burst_offsets(cfg: &GarpConfig) -> Vec<Duration> {
    let burst = |start: Duration| (0..cfg.repeat).map(move |i| start + cfg.interval * i);
    let mut out: Vec<Duration> = burst(Duration::ZERO).collect();
    if !cfg.delay.is_zero() {
        out.extend(burst(cfg.delay));
    }
    out
}

/// A send-only link-layer socket on one interface.
#[derive(Debug)]
pub struct FrameSender {
    socket: Socket,
    ifindex: u32,
}

impl FrameSender {
    pub fn open(ifindex: u32) -> Result<Self, VrrpError> {
        // Protocol 0: no frames are delivered to this socket.
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(0.into())).map_err(|e| {
            VrrpError::io(
                "socket(AF_PACKET)",
                e,
                "CAP_NET_RAW",
                "sending gratuitous ARP / unsolicited NA",
            )
        })?;
        socket.set_nonblocking(true).map_err(|e| VrrpError::Io {
            context: "O_NONBLOCK".into(),
            source: e,
        })?;
        Ok(Self { socket, ifindex })
    }

    /// Sends one complete Ethernet frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let Some(eth) = pnet_packet::ethernet::EthernetPacket::new(frame) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "short frame"));
        };
        let EtherType(proto) = eth.get_ethertype();
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto.to_be();
        sll.sll_ifindex = self.ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&eth.packet()[..6]);
        // SAFETY: frame and sll are live for the call; sizes are passed.
        let n = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use pnet_packet::arp::ArpPacket;
    use pnet_packet::ethernet::EthernetPacket;
    use pnet_packet::icmpv6::ndp::NeighborAdvertPacket;
    use pnet_packet::ipv6::Ipv6Packet;

    use super::*;
    use crate::config::vrrp::GARP_SECOND_BURST;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x2a];

    #[test]
    fn garp_layout() {
        let vip = Ipv4Addr::new(10, 231, 1, 100);
        let f = gratuitous_arp(MAC, vip);
        assert_eq!(f.len(), 42);
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        let arp = ArpPacket::new(&f[14..]).unwrap();
        assert_eq!(arp.get_operation(), ArpOperations::Request);
        assert_eq!(arp.get_sender_proto_addr(), vip);
        assert_eq!(arp.get_target_proto_addr(), vip);
        assert_eq!(arp.get_sender_hw_addr(), MacAddr::from(MAC));
    }

    #[test]
    fn na_layout_and_checksum() {
        let vip: Ipv6Addr = "fd00::100".parse().unwrap();
        let f = unsolicited_na(MAC, vip);
        assert_eq!(f.len(), 14 + 40 + 32);
        let eth = EthernetPacket::new(&f).unwrap();
        assert_eq!(eth.get_destination(), MacAddr::new(0x33, 0x33, 0, 0, 0, 1));
        let ip = Ipv6Packet::new(&f[14..]).unwrap();
        assert_eq!(ip.get_hop_limit(), 255);
        assert_eq!(ip.get_source(), vip);
        assert_eq!(ip.get_destination(), ALL_NODES);
        assert_eq!(ip.get_payload_length(), 32);
        let na = NeighborAdvertPacket::new(&f[54..]).unwrap();
        assert_eq!(na.get_icmpv6_type(), Icmpv6Types::NeighborAdvert);
        assert_eq!(na.get_flags(), NeighborAdvertFlags::Override);
        assert_eq!(na.get_target_addr(), vip);
        assert_eq!(&f[54 + 24..], &[2, 1, 0x02, 0, 0, 0, 0, 0x2a]);
        let icmp = Icmpv6Packet::new(&f[54..]).unwrap();
        assert_eq!(
            pnet_packet::icmpv6::checksum(&icmp, &vip, &ALL_NODES),
            icmp.get_checksum()
        );
        assert_ne!(icmp.get_checksum(), 0);
    }

    #[test]
    fn burst_schedule() {
        let cfg = GarpConfig {
            delay: Duration::from_secs(5),
            repeat: 3,
            interval: Duration::from_millis(100),
            refresh: Duration::ZERO,
        };
        let ms = |v| Duration::from_millis(v);
        assert_eq!(
            burst_offsets(&cfg),
            vec![ms(0), ms(100), ms(200), ms(5000), ms(5100), ms(5200)]
        );
        let none = GarpConfig { repeat: 0, ..cfg };
        assert!(burst_offsets(&none).is_empty());
        // The default: 5 frames, then 5 more just after ARP locktime.
        let default = burst_offsets(&GarpConfig::default());
        assert_eq!(default.len(), 10);
        assert_eq!(default[5], GARP_SECOND_BURST);
    }
}
