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

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
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
        let dir = Arc::new(dir);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let deadline = tokio::time::sleep(self.lifetime);
        tokio::pin!(deadline);
        loop {
            let permit = tokio::select! {
                () = &mut deadline => break,
                () = shutdown.requested() => break,
                permit = slots.clone().acquire_owned() => permit?,
            };
            let (stream, peer) = tokio::select! {
                () = &mut deadline => break,
                () = shutdown.requested() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        eprintln!("accept failed: {err}");
                        continue;
                    }
                },
            };
            let dir = dir.clone();
            tokio::spawn(async move {
                if let Err(err) = serve(stream, &dir).await {
                    eprintln!("{peer}: {err}");
                }
                drop(permit);
            });
        }
        eprintln!("file server ends");
        Ok(ExitCode::SUCCESS)
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

async fn answer(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.shutdown().await
}

/// One connection: one request, one answer.
async fn serve(mut stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::other("no request within 10 s"))??;
    let name = match parse_head(&head) {
        Ok(Request::Ready) => return answer(&mut stream, 200, "OK", "ok\n").await,
        Ok(Request::File(name)) => name,
        Err((status, reason)) => return answer(&mut stream, status, reason, reason).await,
    };
    let Ok(mut file) = tokio::fs::File::open(dir.join(&name)).await else {
        return answer(&mut stream, 404, "Not Found", "no such file\n").await;
    };
    let size = file.metadata().await?.len();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let sent = tokio::io::copy(&mut file, &mut stream).await?;
    stream.shutdown().await?;
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    eprintln!("sent {name} ({sent} bytes) to {peer}");
    Ok(())
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
}
