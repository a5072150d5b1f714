//! A ZeroMQ peer written by hand: ZMTP 3.0 with the NULL mechanism over a
//! blocking std socket, as a DEALER with any identity. A test uses it to
//! do what a real worker never does — claim another worker's identity,
//! send frames it should not, never read, connect thousands of times —
//! against a real master, without a ZeroMQ library in between.
//!
//! [`RawPeer::connect`] writes the greeting and READY at once and reads
//! nothing, so a flood never waits for the master; [`RawPeer::handshake`]
//! reads the master's side when the test wants to know it was accepted.
//! [`RawPeer::recv`] reads the next message (answering a PING), and
//! [`RawPeer::wait_closed`] waits until the master closed the connection.
//! The frame codec ([`greeting`], [`ready`], [`frame`]) is public for
//! tests that write bytes themselves.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Frame flag: more frames of this message follow.
pub const MORE: u8 = 0x01;
/// Frame flag: the size is 8 bytes big-endian instead of 1 byte.
pub const LONG: u8 = 0x02;
/// Frame flag: a command (READY, PING...), not message data.
pub const COMMAND: u8 = 0x04;

/// How long a peer's writes may block before they fail: a master that
/// stops reading makes a flood end with an error rather than hang.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A ZMTP 3.0 greeting, NULL mechanism, as a client (not as-server).
pub fn greeting() -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3; // major
    g[11] = 0; // minor
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// The READY command of a DEALER with identity `identity`.
pub fn ready(identity: &[u8]) -> Vec<u8> {
    ready_as(b"DEALER", identity)
}

/// The READY command of a socket of type `socket_type` with identity
/// `identity`, both sent as given (an identity over 255 bytes, or a type
/// no ROUTER talks to, is the master's to refuse).
pub fn ready_as(socket_type: &[u8], identity: &[u8]) -> Vec<u8> {
    let mut body = vec![5u8];
    body.extend_from_slice(b"READY");
    for (name, value) in [("Socket-Type", socket_type), ("Identity", identity)] {
        body.push(name.len() as u8);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes());
        body.extend_from_slice(value);
    }
    frame(COMMAND, &body)
}

/// One frame with `flags` (0 for a message, [`COMMAND`] for a command);
/// the long-size flag is set for bodies above 255 bytes.
pub fn frame(flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 9);
    if body.len() <= 255 {
        out.push(flags & !LONG);
        out.push(body.len() as u8);
    } else {
        out.push(flags | LONG);
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// One single-frame message: what a Locust worker sends.
pub fn message(payload: &[u8]) -> Vec<u8> {
    frame(0, payload)
}

/// A raw peer on one connection to a master.
#[derive(Debug)]
pub struct RawPeer {
    stream: TcpStream,
    identity: Vec<u8>,
}

impl RawPeer {
    /// Connects to `127.0.0.1:port` and writes the greeting and a READY
    /// with `identity`, reading nothing.
    pub fn connect(port: u16, identity: &[u8]) -> io::Result<RawPeer> {
        RawPeer::connect_to(crate::loopback(port), identity)
    }

    /// [`RawPeer::connect`] to any address.
    pub fn connect_to(addr: SocketAddr, identity: &[u8]) -> io::Result<RawPeer> {
        let stream = TcpStream::connect(addr)?;
        RawPeer::greet(stream, identity)
    }

    /// Sends the greeting and a DEALER's READY on a connected stream (one
    /// the test made itself, bound to a source address, say).
    pub fn greet(stream: TcpStream, identity: &[u8]) -> io::Result<RawPeer> {
        RawPeer::greet_as(stream, b"DEALER", identity)
    }

    /// [`RawPeer::greet`] as a socket of type `socket_type`.
    pub fn greet_as(
        mut stream: TcpStream,
        socket_type: &[u8],
        identity: &[u8],
    ) -> io::Result<RawPeer> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let mut hello = greeting().to_vec();
        hello.extend_from_slice(&ready_as(socket_type, identity));
        stream.write_all(&hello)?;
        Ok(RawPeer {
            stream,
            identity: identity.to_vec(),
        })
    }

    /// The identity it greeted with.
    pub fn identity(&self) -> &[u8] {
        &self.identity
    }

    /// Reads the master's greeting and READY (at most `limit`): the master
    /// took the connection as far as the handshake.
    pub fn handshake(&mut self, limit: Duration) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        let mut theirs = [0u8; 64];
        self.read_exact_by(&mut theirs, deadline)?;
        if theirs[0] != 0xFF || theirs[10] < 3 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the master's greeting is not ZMTP 3",
            ));
        }
        let (flags, body) = self.read_frame(deadline)?;
        if flags & COMMAND == 0 || body.get(1..6).is_none_or(|name| name != b"READY") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the master did not send READY",
            ));
        }
        Ok(())
    }

    /// Sends one message (a whole msgpack payload as a single frame).
    pub fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        self.stream.write_all(&message(payload))
    }

    /// Writes bytes as they are (frames made with [`frame`], or garbage).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next message from the master, within `limit`; commands are
    /// read past (a PING answered with its PONG). `Ok(None)` when the
    /// time ran out between frames; an error when the master closed the
    /// connection. Call [`RawPeer::handshake`] first.
    pub fn recv(&mut self, limit: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + limit;
        loop {
            let (flags, body) = match self.read_frame(deadline) {
                Ok(frame) => frame,
                Err(e) if is_timeout(&e) => return Ok(None),
                Err(e) => return Err(e),
            };
            if flags & COMMAND == 0 {
                if flags & MORE == 0 {
                    return Ok(Some(body));
                }
                continue;
            }
            if body.get(1..5).is_some_and(|name| name == b"PING") {
                let context = body.get(8..).unwrap_or_default();
                let mut pong = vec![4u8];
                pong.extend_from_slice(b"PONG");
                pong.extend_from_slice(&context[..context.len().min(16)]);
                self.stream.write_all(&frame(COMMAND, &pong))?;
            }
        }
    }

    /// Reads (and drops) whatever the master sends until it closes the
    /// connection; `Ok(how long that took)`, or `Err` when it is still
    /// open after `limit`. A reset counts as closed.
    pub fn wait_closed(&mut self, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let mut buf = [0u8; 16 * 1024];
        while started.elapsed() < limit {
            let left = limit.saturating_sub(started.elapsed());
            let tick = left.clamp(Duration::from_millis(1), Duration::from_millis(200));
            self.stream
                .set_read_timeout(Some(tick))
                .map_err(|e| e.to_string())?;
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(started.elapsed()),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => return Ok(started.elapsed()),
            }
        }
        Err(format!("still open after {limit:?}"))
    }

    /// The socket itself (to clone it for a reading thread, or shut it).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The socket, for a test that writes to it by hand from here on.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Reads one frame: (flags, body). A body announced over 64 MiB is
    /// refused: no master sends one.
    fn read_frame(&mut self, deadline: Instant) -> io::Result<(u8, Vec<u8>)> {
        let mut flags = [0u8; 1];
        self.read_exact_by(&mut flags, deadline)?;
        let size = if flags[0] & LONG != 0 {
            let mut size = [0u8; 8];
            self.read_exact_by(&mut size, deadline)?;
            u64::from_be_bytes(size)
        } else {
            let mut size = [0u8; 1];
            self.read_exact_by(&mut size, deadline)?;
            u64::from(size[0])
        };
        if size > 64 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a frame of {size} bytes announced"),
            ));
        }
        let mut body = vec![0u8; size as usize];
        self.read_exact_by(&mut body, deadline)?;
        Ok((flags[0], body))
    }

    /// `read_exact` that gives up at `deadline` with a timeout error (the
    /// connection is then out of step: a test peer does not read on).
    fn read_exact_by(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
        let mut read = 0;
        while read < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no data in time"));
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut buf[read..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Whether a read error is a read timeout (Linux says `WouldBlock`).
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
