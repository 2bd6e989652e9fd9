//! A TCP fault proxy for real-socket tests.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// What the proxy does to traffic; change it while the proxy runs with
/// [`FaultProxy::set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Delay every chunk by this much, in both directions.
    Latency(Duration),
    /// Accept bytes from both sides and forward nothing (a dead peer whose
    /// socket stays open).
    Blackhole,
    /// Reset every connection (TCP RST), and every new one at once.
    Reset,
    /// Forward this many bytes per connection (both directions together),
    /// then reset it.
    CutAfter(u64),
    /// Forward at most this many bytes per second, per direction.
    Throttle(u64),
    /// Stop listening: new connections are refused; open ones are kept.
    RefuseNew,
}

/// A TCP proxy on 127.0.0.1 in front of a loopback server, with faults you
/// switch on and off while it runs.
///
/// It only listens on and connects to loopback. It stops when dropped.
///
/// ```
/// use actix_tether::testkit::{Fault, FaultProxy};
///
/// actix_rt::System::new().block_on(async {
///     let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
///     let proxy = FaultProxy::start(upstream.local_addr().unwrap()).await.unwrap();
///     assert!(proxy.addr().ip().is_loopback());
///     proxy.set(Fault::Blackhole);
///     assert_eq!(proxy.fault(), Fault::Blackhole);
/// });
/// ```
pub struct FaultProxy {
    addr: SocketAddr,
    fault: watch::Sender<Fault>,
    accepted: Arc<AtomicUsize>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("fault", &*self.fault.borrow())
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream`, which must be a loopback
    /// address. Must be called inside a tokio (actix) runtime.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an upstream that is not on loopback; the
    /// `io::Error` of binding the proxy's port.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        if !upstream.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the fault proxy only connects to loopback addresses",
            ));
        }
        let listener = listen("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
        let addr = listener.local_addr()?;
        let (fault, rx) = watch::channel(Fault::Pass);
        let accepted = Arc::new(AtomicUsize::new(0));
        actix_rt::spawn(accept_loop(listener, addr, upstream, rx, accepted.clone()));
        Ok(Self {
            addr,
            fault,
            accepted,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the fault; open connections see it at their next chunk
    /// (`Reset` resets them at once).
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// How many connections the proxy accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

fn reset(stream: TcpStream) {
    // Linger 0 turns the close into an RST.
    let _ = stream.set_zero_linger();
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut fault: watch::Receiver<Fault>,
    accepted: Arc<AtomicUsize>,
) {
    let mut listener = Some(listener);
    loop {
        let current = *fault.borrow_and_update();
        if current == Fault::RefuseNew {
            listener = None;
        } else if listener.is_none() {
            match listen(addr) {
                Ok(l) => listener = Some(l),
                Err(_) => return,
            }
        }
        let Some(l) = &listener else {
            if fault.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            res = l.accept() => {
                let Ok((client, _)) = res else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                if current == Fault::Reset {
                    reset(client);
                    continue;
                }
                actix_rt::spawn(relay(client, upstream, fault.clone()));
            }
            changed = fault.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

enum Step {
    Continue,
    Cut,
}

async fn forward(
    fault: Fault,
    data: &[u8],
    to: &mut TcpStream,
    total: &mut u64,
) -> io::Result<Step> {
    match fault {
        Fault::Blackhole => return Ok(Step::Continue),
        Fault::Latency(d) => actix_rt::time::sleep(d).await,
        _ => {}
    }
    let allowed = match fault {
        Fault::CutAfter(limit) => {
            let left = limit.saturating_sub(*total);
            usize::try_from(left).unwrap_or(usize::MAX).min(data.len())
        }
        _ => data.len(),
    };
    to.write_all(&data[..allowed]).await?;
    *total += allowed as u64;
    if let Fault::Throttle(bps) = fault {
        let secs = allowed as f64 / bps.max(1) as f64;
        actix_rt::time::sleep(Duration::from_secs_f64(secs)).await;
    }
    match fault {
        Fault::CutAfter(limit) if *total >= limit => Ok(Step::Cut),
        _ => Ok(Step::Continue),
    }
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, mut fault: watch::Receiver<Fault>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        reset(client);
        return;
    };
    let mut total = 0u64;
    let mut from_client = vec![0u8; 16 * 1024];
    let mut from_server = vec![0u8; 16 * 1024];
    loop {
        let current = *fault.borrow_and_update();
        if current == Fault::Reset {
            break;
        }
        let step = tokio::select! {
            r = client.read(&mut from_client) => match r {
                Ok(0) | Err(_) => {
                    let _ = server.shutdown().await;
                    return;
                }
                Ok(n) => forward(current, &from_client[..n], &mut server, &mut total).await,
            },
            r = server.read(&mut from_server) => match r {
                Ok(0) | Err(_) => {
                    let _ = client.shutdown().await;
                    return;
                }
                Ok(n) => forward(current, &from_server[..n], &mut client, &mut total).await,
            },
            changed = fault.changed() => match changed {
                Ok(()) => Ok(Step::Continue),
                Err(_) => return,
            },
        };
        match step {
            Ok(Step::Continue) => {}
            Ok(Step::Cut) | Err(_) => break,
        }
    }
    reset(client);
    reset(server);
}
