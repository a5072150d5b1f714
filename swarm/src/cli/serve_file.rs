//! `loadtest serve-file` (hidden): the deploy's one-shot file server. The
//! master host runs it for a bounded time so the other hosts of the fleet
//! fetch the new `loadtest` from it over the private network, instead of
//! each getting it from the operator.
//!
//! It serves only files of one directory whose names are a SHA-256 digest
//! (64 lowercase hex digits), optionally with `.zst`: `GET /<digest>` and
//! `GET /<digest>.zst`, plus `GET /ready` for the deploy's start check.
//! Plain HTTP/1.1, one request per connection, files streamed from disk
//! (constant memory however many hosts fetch at once). The fetching host
//! checks the digest itself, so nothing here has to be trusted.
//!
//! A downloader cannot hold the server: a connection that takes no byte
//! for [`WRITE_TIMEOUT`] is closed, and one source address holds at most
//! [`MAX_PER_SOURCE`] of the [`MAX_CONNECTIONS`] slots.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::parse::parse_positive_time;
use crate::shutdown::Shutdown;

/// A request head larger than this is refused: fetches send a few lines.
const MAX_HEAD: usize = 8 * 1024;
/// A client that sends no complete request head within this is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many connections are served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 256;
/// A connection whose client has taken no byte of its answer for this
/// long is closed: fleet hosts fetch over the VPC at tens of MB/s, so a
/// client this still has gone or never meant to read, and its slot and
/// its open file are wanted by the others.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections one source address may hold at once. A fleet host fetches
/// once (curl, one connection, retried one at a time); the deploy's ready
/// check is one more. A host opening more is refused at once, so one
/// cannot take the slots of the rest.
const MAX_PER_SOURCE: usize = 4;
/// Bytes read from the file and written per step of a download.
const CHUNK: usize = 64 * 1024;

/// The bounds the server applies; the constants above, shortened by tests.
#[derive(Debug, Clone, Copy)]
struct Limits {
    head_timeout: Duration,
    write_timeout: Duration,
    max_connections: usize,
    max_per_source: usize,
}

const LIMITS: Limits = Limits {
    head_timeout: HEAD_TIMEOUT,
    write_timeout: WRITE_TIMEOUT,
    max_connections: MAX_CONNECTIONS,
    max_per_source: MAX_PER_SOURCE,
};

/// `loadtest serve-file`'s flags.
#[derive(Debug, Args)]
pub struct ServeFileArgs {
    /// Directory holding the files, named by their SHA-256 digest.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Port to listen on.
    #[arg(long, default_value_t = 5558)]
    pub port: u16,
    /// Exit after this long, whatever happens (the deploy stops it sooner).
    #[arg(long, default_value = "10m", value_parser = parse_positive_time)]
    pub lifetime: Duration,
}

impl ServeFileArgs {
    /// Serves until `--lifetime` passes or `shutdown` fires; exits 0 then.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
        let dir = self
            .dir
            .canonicalize()
            .with_context(|| format!("--dir {}: no such directory", self.dir.display()))?;
        let address = SocketAddr::new(self.bind, self.port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}: is the port taken?"))?;
        eprintln!(
            "serving {} on {address} for at most {:?}",
            dir.display(),
            self.lifetime
        );
        let server = Arc::new(FileServer::new(dir, LIMITS));
        let deadline = tokio::time::sleep(self.lifetime);
        tokio::select! {
            () = deadline => {}
            () = shutdown.requested() => {}
            () = server.clone().accept_loop(listener) => {}
        }
        let stalled = server.stalled.load(Ordering::Relaxed);
        if stalled > 0 {
            eprintln!(
                "{stalled} download(s) closed after their client took nothing for {:?}",
                LIMITS.write_timeout
            );
        }
        eprintln!("file server ends");
        Ok(ExitCode::SUCCESS)
    }
}

/// The directory served and what the server keeps count of.
struct FileServer {
    dir: PathBuf,
    limits: Limits,
    /// Open connections per source address.
    sources: Mutex<HashMap<IpAddr, usize>>,
    /// Downloads closed because their client stopped taking bytes.
    stalled: AtomicUsize,
}

impl FileServer {
    fn new(dir: PathBuf, limits: Limits) -> FileServer {
        FileServer {
            dir,
            limits,
            sources: Mutex::new(HashMap::new()),
            stalled: AtomicUsize::new(0),
        }
    }

    /// Accepts until the caller stops polling: at most `max_connections`
    /// at once (more wait in the backlog), `max_per_source` per address
    /// (more are refused at once).
    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    eprintln!("accept failed: {err}");
                    // Out of descriptors, say: do not spin on it.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(source) = SourceSlot::take(&self, peer.ip()) else {
                eprintln!(
                    "{peer}: refused, {} connections from it already",
                    self.limits.max_per_source
                );
                let _ = stream.try_write(TOO_MANY.as_bytes());
                continue;
            };
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(err) = server.serve(stream).await {
                    if err.kind() == std::io::ErrorKind::TimedOut {
                        server.stalled.fetch_add(1, Ordering::Relaxed);
                    }
                    eprintln!("{peer}: {err}");
                }
                drop((source, permit));
            });
        }
    }
}

/// The answer to a source over its connection limit.
const TOO_MANY: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 36\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\ntoo many connections from your host\n";

/// One connection counted against its source address, until dropped.
struct SourceSlot {
    server: Arc<FileServer>,
    ip: IpAddr,
}

impl SourceSlot {
    fn take(server: &Arc<FileServer>, ip: IpAddr) -> Option<SourceSlot> {
        let mut sources = server
            .sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let open = sources.entry(ip).or_insert(0);
        if *open >= server.limits.max_per_source {
            return None;
        }
        *open += 1;
        Some(SourceSlot {
            server: server.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut sources = self
            .server
            .sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(open) = sources.get_mut(&self.ip) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                sources.remove(&self.ip);
            }
        }
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Ready,
    File(String),
}

/// The answer to a request head: the request, or a status and reason.
fn parse_head(head: &str) -> Result<Request, (u16, &'static str)> {
    let line = head.lines().next().unwrap_or_default();
    let mut words = line.split(' ');
    let (method, path) = (words.next().unwrap_or_default(), words.next());
    let path = path.ok_or((400, "Bad Request"))?;
    if method != "GET" {
        return Err((405, "Method Not Allowed"));
    }
    let name = path.strip_prefix('/').ok_or((400, "Bad Request"))?;
    if name == "ready" {
        return Ok(Request::Ready);
    }
    let digest = name.strip_suffix(".zst").unwrap_or(name);
    let hex = digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex {
        Ok(Request::File(name.to_string()))
    } else {
        Err((404, "Not Found"))
    }
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Err(std::io::Error::other("request head too large"));
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before a whole request"));
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Writes all of `bytes`, failing with `TimedOut` when the client takes
/// none of them for `limit`.
async fn write_within(
    stream: &mut TcpStream,
    mut bytes: &[u8],
    limit: Duration,
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let written = tokio::time::timeout(limit, stream.write(bytes))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the client took no byte for {limit:?}: closed"),
                )
            })??;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[written..];
    }
    Ok(())
}

impl FileServer {
    async fn answer(
        &self,
        stream: &mut TcpStream,
        status: u16,
        reason: &str,
        body: &str,
    ) -> std::io::Result<()> {
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        write_within(stream, head.as_bytes(), self.limits.write_timeout).await?;
        stream.shutdown().await
    }

    /// One connection: one request, one answer.
    async fn serve(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let limit = self.limits.head_timeout;
        let head = tokio::time::timeout(limit, read_head(&mut stream))
            .await
            .map_err(|_| std::io::Error::other(format!("no request within {limit:?}")))??;
        let name = match parse_head(&head) {
            Ok(Request::Ready) => return self.answer(&mut stream, 200, "OK", "ok\n").await,
            Ok(Request::File(name)) => name,
            Err((status, reason)) => return self.answer(&mut stream, status, reason, reason).await,
        };
        let Ok(mut file) = tokio::fs::File::open(self.dir.join(&name)).await else {
            return self
                .answer(&mut stream, 404, "Not Found", "no such file\n")
                .await;
        };
        let size = file.metadata().await?.len();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        );
        let write_timeout = self.limits.write_timeout;
        write_within(&mut stream, head.as_bytes(), write_timeout).await?;
        let mut sent: u64 = 0;
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = file.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            write_within(&mut stream, &chunk[..n], write_timeout).await?;
            sent = sent.saturating_add(n as u64);
        }
        stream.shutdown().await?;
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        eprintln!("sent {name} ({sent} bytes) to {peer}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn only_digest_names_and_ready_are_served() {
        let get = |path: &str| parse_head(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(get(&format!("/{DIGEST}")), Ok(Request::File(DIGEST.into())));
        let zst = format!("{DIGEST}.zst");
        assert_eq!(get(&format!("/{zst}")), Ok(Request::File(zst)));
        assert_eq!(get("/ready"), Ok(Request::Ready));
        for bad in [
            "/../etc/passwd",
            "/",
            "/x.zst",
            &format!("/{}", DIGEST.to_uppercase()),
        ] {
            assert_eq!(get(bad), Err((404, "Not Found")), "{bad}");
        }
        assert_eq!(get("relative"), Err((400, "Bad Request")));
        assert_eq!(
            parse_head("POST /ready HTTP/1.1\r\n\r\n"),
            Err((405, "Method Not Allowed"))
        );
        assert_eq!(parse_head("\r\n\r\n"), Err((400, "Bad Request")));
    }

    #[tokio::test]
    async fn streams_a_file_and_ends_at_its_lifetime() {
        let dir = std::env::temp_dir().join(format!("serve-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let body = vec![7u8; 300_000];
        std::fs::write(dir.join(DIGEST), &body).unwrap();
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let args = ServeFileArgs {
            dir: dir.clone(),
            bind: "127.0.0.1".parse().unwrap(),
            port,
            lifetime: Duration::from_secs(2),
        };
        let server = tokio::spawn(args.run(Shutdown::new()));
        let mut stream = loop {
            match TcpStream::connect(("127.0.0.1", port)).await {
                Ok(stream) => break stream,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let request = format!("GET /{DIGEST} HTTP/1.1\r\nHost: t\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        let split = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&got[..split]).into_owned();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Length: 300000\r\n"), "{head}");
        assert_eq!(&got[split..], &body[..]);
        let code = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("ends at its lifetime")
            .unwrap()
            .unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A server on a free loopback port with `limits`, serving a
    /// `size`-byte file named [`DIGEST`]; returns it, its address and the
    /// directory (removed on drop).
    async fn server_with(
        limits: Limits,
        size: usize,
    ) -> (Arc<FileServer>, SocketAddr, tempdir::Dir) {
        let dir = tempdir::Dir::new();
        std::fs::write(dir.0.join(DIGEST), vec![7u8; size]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = Arc::new(FileServer::new(dir.0.clone(), limits));
        tokio::spawn(server.clone().accept_loop(listener));
        (server, address, dir)
    }

    mod tempdir {
        /// A directory under the system temp dir, removed on drop.
        pub struct Dir(pub std::path::PathBuf);

        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let path =
                    std::env::temp_dir().join(format!("serve-file-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    async fn request(stream: &mut TcpStream, path: &str) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
    }

    /// A client that asks for the file and never reads is dropped after
    /// the write timeout, while another client downloads it whole.
    #[tokio::test]
    async fn a_client_that_never_reads_is_dropped_while_another_downloads() {
        // Far more than loopback's socket buffers on both sides hold.
        const SIZE: usize = 48 * 1024 * 1024;
        let limits = Limits {
            write_timeout: Duration::from_millis(800),
            ..LIMITS
        };
        let (server, address, _dir) = server_with(limits, SIZE).await;
        let mut stalled = TcpStream::connect(address).await.unwrap();
        request(&mut stalled, &format!("/{DIGEST}")).await;

        let mut reader = TcpStream::connect(address).await.unwrap();
        request(&mut reader, &format!("/{DIGEST}")).await;
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.unwrap();
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
        let body = got.len() - (got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4);
        assert_eq!(body, SIZE, "the reading client got the whole file");

        // The server counts the stalled download once it has cut it.
        let cut = tokio::time::timeout(Duration::from_secs(10), async {
            while server.stalled.load(Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(cut.is_ok(), "the stalled download was not cut");
        // What it gets now is what sat in the socket buffers, then the end.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut rest))
            .await
            .expect("the stalled connection was closed");
        assert!(
            rest.len() < SIZE,
            "the stalled client got only what was buffered ({} of {SIZE} bytes)",
            rest.len()
        );
    }

    #[tokio::test]
    async fn one_source_holds_at_most_its_share_of_connections() {
        let limits = Limits {
            max_per_source: 2,
            ..LIMITS
        };
        let (_server, address, _dir) = server_with(limits, 10).await;
        // Two held connections from 127.0.0.1, each waiting for its head.
        let _held = [
            TcpStream::connect(address).await.unwrap(),
            TcpStream::connect(address).await.unwrap(),
        ];
        let mut third = TcpStream::connect(address).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), third.read_to_string(&mut answer))
            .await
            .expect("refused at once")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{answer}"
        );
        // Another source is still served.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut other = socket.connect(address).await.unwrap();
        request(&mut other, "/ready").await;
        let mut answer = String::new();
        other.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }
}
