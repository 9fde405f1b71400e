//! Small servers on 127.0.0.1 port 0 for what the emulator does not do: storage that
//! trickles a body after its headers, objects with blank lines, and a proxy that only
//! records what reaches it. Each connection is served on its own thread by a handler
//! that gets the request's head and the stream.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dap_proto::{DataRange, Format, JobId, ObjectId, ObjectUrl, PresignedUrl, QueryResult};

/// Serves one connection: the request head (request line and headers), its index among
/// the requests received, and the stream to answer on.
pub type Handler = dyn Fn(usize, &str, &mut TcpStream) + Send + Sync;

/// A stub server; stops when dropped.
pub struct Stub {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Stub {
    /// Starts a server answering every connection with `handler`.
    ///
    /// # Panics
    /// When it cannot bind 127.0.0.1.
    pub fn start(handler: impl Fn(usize, &str, &mut TcpStream) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (seen, stopped) = (Arc::clone(&heads), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let (handler, seen) = (Arc::clone(&handler), Arc::clone(&seen));
                std::thread::spawn(move || {
                    let _ = stream.set_nonblocking(false);
                    let head = read_head(&mut stream);
                    let index = {
                        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                        seen.push(head.clone());
                        seen.len() - 1
                    };
                    handler(index, &head, &mut stream);
                });
            }
        });
        Self { addr, heads, stop }
    }

    /// `http://127.0.0.1:PORT` plus `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The heads of every request received so far.
    pub fn heads(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_head(stream: &mut TcpStream) -> String {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The start of a `Range: bytes=N-` header in `head`, if any.
pub fn range_start(head: &str) -> Option<usize> {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("range: bytes=")
                .map(str::to_owned)
        })
        .and_then(|r| r.trim_end_matches('-').parse().ok())
}

/// Answers with `body[start..]` (a 206 when `start > 0`), writing `fast` bytes at once
/// and then the rest one byte every `trickle` (or at once when `None`).
pub fn serve(
    stream: &mut TcpStream,
    body: &[u8],
    start: usize,
    fast: usize,
    trickle: Option<Duration>,
) {
    let rest = &body[start.min(body.len())..];
    let status = if start > 0 {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let mut head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", rest.len());
    if start > 0 {
        head.push_str(&format!(
            "content-range: bytes {start}-{}/{}\r\n",
            body.len() - 1,
            body.len()
        ));
    }
    head.push_str("connection: close\r\n\r\n");
    let _ = stream.write_all(head.as_bytes());
    let (now, later) = rest.split_at(fast.min(rest.len()));
    let _ = stream.write_all(now);
    for byte in later {
        if let Some(pause) = trickle {
            std::thread::sleep(pause);
        }
        if stream.write_all(&[*byte]).is_err() {
            return;
        }
    }
}

/// `bytes` gzip-compressed, as storage holds a jsonl object.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// A finished jsonl query whose objects are `urls` (not signed: storage stubs take any).
pub fn result_for(urls: &[String]) -> QueryResult {
    let objects = urls
        .iter()
        .enumerate()
        .map(|(i, url)| ObjectUrl {
            id: ObjectId::new(format!("stub/{i}")),
            url: PresignedUrl::new(url.clone()),
        })
        .collect();
    QueryResult {
        namespace: "canvas".to_owned(),
        table: "stub".to_owned(),
        job: JobId::new("stub"),
        format: Format::Jsonl,
        expires_at: None,
        schema_version: 1,
        range: DataRange::Snapshot {
            at: jiff::Timestamp::UNIX_EPOCH,
        },
        objects,
        pending: Vec::new(),
        urls_issued_at: Instant::now(),
    }
}
