//! HTTP/3 on every core: one quinn endpoint per core, each on a thread of
//! its own with a single-threaded runtime, all bound to the server's UDP
//! port (`SO_REUSEPORT`). A connection's packets, streams and requests stay
//! on the thread that took it (a tenth of HTTP/3's cost on two cores was
//! waking the other worker), and receiving scales with cores. Packets follow
//! their connection ID to the endpoint that owns it (`crate::steering`), so
//! a client whose address changes keeps its connection.

#![allow(clippy::wildcard_imports)]

use super::*;

use std::hash::RandomState;

use tokio::sync::oneshot;

use crate::steering::{self, EndpointCids};

/// The UDP sockets of `n` endpoints on `addr`, bound in endpoint order,
/// with the steering program on their group. One socket needs neither.
pub(super) fn bind_udp(addr: SocketAddr, n: u8) -> std::io::Result<Vec<std::net::UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    if n > 1 {
        // The port must be free, not held by another group of ours: a
        // server that stopped accepting TCP keeps its UDP sockets while it
        // drains, and a new server given that TCP port would join their
        // group (same user, reuseport on both), its packets split with a
        // dying server's. A plain bind fails on a held port; this one is let
        // go at once (the group binds right after, while our TCP listener
        // keeps the number from any other server of ours).
        drop(std::net::UdpSocket::bind(addr)?);
    }
    let mut socks = Vec::with_capacity(n.into());
    for _ in 0..n {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if n > 1 {
            s.set_reuse_port(true)?;
        }
        s.set_nonblocking(true)?;
        raise_recv_buffer(&s, socks.is_empty());
        s.bind(&addr.into())?;
        socks.push(s);
    }
    let mut socks: Vec<std::net::UdpSocket> = socks.into_iter().map(std::net::UdpSocket::from).collect();
    if n > 1 {
        // Without steering, a client whose address changes would reach an
        // endpoint that does not know its connection: one endpoint then.
        let steered = attach_steering(&socks[0], n).and_then(|()| steering_holds(&socks, addr));
        match steered {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    "packets did not reach the endpoint their ID names (another socket in the port's group?): one HTTP/3 endpoint"
                );
                socks.truncate(1);
            }
            Err(e) => {
                tracing::warn!(error = %e, "the kernel takes no reuseport program: one HTTP/3 endpoint");
                socks.truncate(1);
            }
        }
    }
    Ok(socks)
}

/// What each endpoint's socket asks the kernel to queue: Linux's default
/// (208 KiB, about 90 full datagrams) is 2 ms of a 40,000-packet-a-second
/// Initial flood, so any pause of the endpoint's thread dropped honest
/// handshakes with the flood's, each then waiting out its client's
/// one-second retransmission timer (`bench/hostile.sh 20 initial-flood`).
/// Past `net.core.rmem_max` the kernel grants only that.
const UDP_RECV_BUFFER: usize = 8 << 20;

/// Asks for [`UDP_RECV_BUFFER`]; says once (`tell`) if the kernel granted less.
fn raise_recv_buffer(s: &socket2::Socket, tell: bool) {
    let _ = s.set_recv_buffer_size(UDP_RECV_BUFFER);
    // Linux reports twice what it grants (its bookkeeping's share included).
    let granted = s.recv_buffer_size().unwrap_or(0) / 2;
    if tell && granted < UDP_RECV_BUFFER {
        tracing::info!(
            granted,
            wanted = UDP_RECV_BUFFER,
            "HTTP/3 sockets' receive buffer below what is wanted: raise net.core.rmem_max to absorb bursts of packets"
        );
    }
}

/// Whether the group steers as the program says, seen from outside: a
/// short-header datagram naming each endpoint is sent to the port, and
/// each must arrive at that endpoint's socket, within half a second. A
/// socket in the group that is not ours (another process of this user,
/// joined before us) shifts every index: then the answer is no.
fn steering_holds(socks: &[std::net::UdpSocket], addr: SocketAddr) -> std::io::Result<bool> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let to = SocketAddr::new(ip, addr.port());
    let probe = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
    let from = probe.local_addr()?;
    let marker = tranzcast_proto::random_bytes::<16>();
    for i in 0..socks.len() {
        let mut d = vec![0x40, i as u8];
        d.extend_from_slice(&marker);
        probe.send_to(&d, to)?;
    }
    let until = std::time::Instant::now() + Duration::from_millis(500);
    let mut seen = vec![false; socks.len()];
    let mut buf = [0u8; 64];
    while seen.contains(&false) {
        for (i, s) in socks.iter().enumerate() {
            loop {
                match s.recv_from(&mut buf) {
                    // Anything else (a client's packet, early) is let go: it will be sent again.
                    Ok((len, src)) if src == from && buf[..len].ends_with(&marker) => {
                        if usize::from(buf[1]) != i {
                            return Ok(false);
                        }
                        seen[i] = true;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        if std::time::Instant::now() >= until {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(true)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn attach_steering(sock: &std::net::UdpSocket, n: u8) -> std::io::Result<()> {
    let mut insns: Vec<libc::sock_filter> =
        steering::program(n).iter().map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k }).collect();
    let len = u16::try_from(insns.len()).map_err(|_| std::io::Error::other("steering program too long"))?;
    // The kernel copies the program during the call.
    let prog = libc::sock_fprog { len, filter: insns.as_mut_ptr() };
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::AttachReusePortCbpf, &prog).map_err(std::io::Error::from)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn attach_steering(_: &std::net::UdpSocket, _: u8) -> std::io::Result<()> {
    Err(std::io::Error::other("steering HTTP/3 packets by connection ID needs Linux"))
}

/// How many endpoints `configured` (0: one per core) comes to, at most
/// `MAX_H3_ENDPOINTS`; one where the kernel cannot steer packets.
pub(super) fn endpoint_count(configured: usize) -> u8 {
    let n = if configured == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { configured };
    let n = n.clamp(1, usize::from(tranzcast_config::MAX_H3_ENDPOINTS)) as u8;
    if cfg!(any(target_os = "linux", target_os = "android")) { n } else { 1 }
}

/// The running endpoints: their handles, and what ends their threads.
pub(super) struct H3Endpoints {
    endpoints: Vec<quinn::Endpoint>,
    /// Each resolves once that endpoint's accept loop has ended.
    accepting: Vec<oneshot::Receiver<()>>,
    /// Sent (or dropped) to let a thread end: its runtime, and whatever
    /// tasks are left on it, go with it.
    release: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for H3Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Endpoints").field("endpoints", &self.endpoints.len()).finish_non_exhaustive()
    }
}

/// What every endpoint's accept loop is given.
pub(super) struct Serving {
    pub(super) shared: Arc<Shared>,
    pub(super) slots: Arc<Slots>,
    pub(super) max_connections: u32,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) stops: Stops,
}

impl H3Endpoints {
    /// Starts an endpoint on each of `sockets` (from [`bind_udp`]), each on a thread of its own.
    pub(super) async fn start(sockets: Vec<std::net::UdpSocket>, config: quinn::ServerConfig, serving: Serving) -> Result<Self, NetError> {
        let n = u8::try_from(sockets.len()).map_err(|_| NetError::H3("too many endpoints".into()))?;
        let key = RandomState::new();
        // Handshakes from unproven addresses: one pool for the whole server.
        let unproven = Arc::new(AtomicU32::new(0));
        serving.shared.stats.h3_endpoints(n.into());
        let mut me = Self { endpoints: Vec::new(), accepting: Vec::new(), release: Vec::new(), threads: Vec::new() };
        for (index, socket) in (0u8..).zip(sockets) {
            let (ready_tx, ready) = oneshot::channel();
            let (accepting_tx, accepting) = oneshot::channel();
            let (release, release_rx) = oneshot::channel::<()>();
            let (config, key, unproven) = (config.clone(), key.clone(), unproven.clone());
            let (shared, slots, stop, stops) = (serving.shared.clone(), serving.slots.clone(), serving.stop.clone(), serving.stops.clone());
            let max_connections = serving.max_connections;
            let thread = std::thread::Builder::new()
                .name(format!("h3-endpoint-{index}"))
                .spawn(move || {
                    let _watch = PanicWatch(index);
                    // The blocking pools of all endpoints together stay within
                    // what one multi-threaded runtime would allow.
                    let blocking = (BLOCKING_THREADS / usize::from(n)).max(16);
                    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(blocking).build() {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("runtime: {e}")));
                            return;
                        }
                    };
                    rt.block_on(async move {
                        let mut ep_config = quinn::EndpointConfig::default();
                        let foreign = shared.stats.h3_foreign_ids.clone();
                        ep_config.cid_generator(move || Box::new(EndpointCids::new(index, n, key.clone()).counting(foreign.clone())));
                        let endpoint = match quinn::Endpoint::new(ep_config, Some(config), socket, Arc::new(quinn::TokioRuntime)) {
                            Ok(ep) => ep,
                            Err(e) => {
                                let _ = ready_tx.send(Err(format!("endpoint: {e}")));
                                return;
                            }
                        };
                        if ready_tx.send(Ok(endpoint.clone())).is_err() {
                            return;
                        }
                        accept_h3(endpoint, index, shared, slots, max_connections, unproven, stop, stops).await;
                        let _ = accepting_tx.send(());
                        let _ = release_rx.await;
                    });
                    // Tasks left are dropped; blocking work in hand (a store
                    // write) is given a moment to end, not waited for forever.
                    rt.shutdown_timeout(THREAD_END);
                })
                .map_err(NetError::io("spawn an h3 endpoint thread"))?;
            me.threads.push(thread);
            me.accepting.push(accepting);
            me.release.push(release);
            match ready.await {
                Ok(Ok(ep)) => me.endpoints.push(ep),
                // Dropping `me` releases the threads already started.
                Ok(Err(e)) => return Err(NetError::H3(e)),
                Err(_) => return Err(NetError::H3("an h3 endpoint thread ended at start".into())),
            }
        }
        Ok(me)
    }

    /// How many endpoints run.
    pub(super) fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Resolves once every endpoint has stopped accepting (after the stop
    /// signal), or after a few seconds: a stuck thread does not hold shutdown.
    pub(super) async fn stopped_accepting(&mut self) {
        let all = futures_util::future::join_all(self.accepting.iter_mut());
        if tokio::time::timeout(THREAD_END, all).await.is_err() {
            tracing::warn!("an HTTP/3 endpoint did not stop accepting in time");
        }
    }

    /// Closes every endpoint (connections get a CONNECTION_CLOSE), waits a
    /// moment for them to be idle, then ends the threads and joins them:
    /// after this, nothing of the server's state is held by them.
    pub(super) async fn close(mut self) {
        for ep in &self.endpoints {
            ep.close(super::h3_streams::varint(tranzcast_proto::http3::H3Code::NoError), b"shutdown");
        }
        let idle = futures_util::future::join_all(self.endpoints.iter().map(quinn::Endpoint::wait_idle));
        let _ = tokio::time::timeout(Duration::from_secs(1), idle).await;
        for r in self.release.drain(..) {
            let _ = r.send(());
        }
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        // Each thread ends within THREAD_END of its release; past twice
        // that, it is left behind (and said), not waited for.
        if tokio::time::timeout(2 * THREAD_END, joined).await.is_err() {
            tracing::warn!("an HTTP/3 endpoint thread did not end in time");
        }
    }
}

/// How long a thread's end may take (its blocking work in hand), and how
/// long shutdown waits for the endpoints to stop accepting.
const THREAD_END: Duration = Duration::from_secs(2);

/// Blocking threads of all endpoints' runtimes together (tokio's default for one runtime).
const BLOCKING_THREADS: usize = 512;

/// Says so when an endpoint's thread ends by a panic: its connections are
/// gone, and new ones the kernel gives its socket go unanswered.
struct PanicWatch(u8);

impl Drop for PanicWatch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(endpoint = self.0, "an HTTP/3 endpoint's thread panicked: restart the server");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A group of four on a free port of 127.0.0.1 (another test may take
    /// the port between the look and the bind: a few tries).
    fn group() -> (Vec<std::net::UdpSocket>, SocketAddr) {
        for _ in 0..10 {
            let addr = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
            if let Ok(socks) = bind_udp(addr, 4) {
                return (socks, addr);
            }
        }
        panic!("no free port");
    }

    #[test]
    fn the_kernel_steers_each_endpoints_packets_to_its_socket_and_the_check_sees_a_shift() {
        let (mut socks, addr) = group();
        // Four sockets kept: the check at bind passed.
        assert_eq!(socks.len(), 4);
        assert!(steering_holds(&socks, addr).unwrap());
        // Endpoints in another order than the group's (as a foreign socket
        // joined first would make them): the check says so.
        socks.reverse();
        assert!(!steering_holds(&socks, addr).unwrap());
    }

    #[test]
    fn a_port_held_by_another_group_is_refused() {
        let (_held, addr) = group();
        assert!(bind_udp(addr, 4).is_err());
    }
}
