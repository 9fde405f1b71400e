//! Drives a `Session` over nothing but `std::net::TcpStream` and the `wire` module: the
//! shape of a custom runtime that has only a byte stream. Plain HTTP only (no TLS), so it
//! talks to the local emulator by default, or to `DAP_API_URL` (an `http://` loopback URL)
//! with `DAP_CLIENT_ID` and `DAP_CLIENT_SECRET` when set.
//!
//! Run with `cargo run -p dap-proto --example raw_tcp`.
#![allow(clippy::disallowed_methods)] // an example runtime owns the clock
#![allow(clippy::disallowed_types)] // ... and the sockets

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dap_proto::wire::{Progress, ResponseParser, WireError, write_request};
use dap_proto::{Command, Config, Format, Outcome, Output, PollPolicy, Query, Session};

/// Sends one request on a fresh connection and reads one response.
fn exchange(
    request: &http::Request<Vec<u8>>,
    max_body: usize,
) -> Result<http::Response<Vec<u8>>, String> {
    let authority = request
        .uri()
        .authority()
        .ok_or("no authority")?
        .as_str()
        .to_owned();
    let mut stream =
        TcpStream::connect(&authority).map_err(|e| format!("connect {authority}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    write_request(request, &mut bytes).map_err(|e| e.to_string())?;
    stream.write_all(&bytes).map_err(|e| e.to_string())?;
    let mut parser = ResponseParser::new(request.method() == http::Method::HEAD, max_body);
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return parser.finish_eof().map_err(|e| e.to_string());
        }
        // A split read is fine: the parser keeps what it has and asks for more.
        // A split read is fine: the parser keeps what it has and asks for more.
        match parser.feed(&buf[..n]) {
            Ok(Progress::Complete(response, _)) => return Ok(response),
            Ok(_) => {}
            // Over the cap: hand the head and the first bytes to the session, which
            // answers with a typed "body too large" error rather than a retry.
            Err(WireError::BodyTooLarge { .. }) => {
                return parser
                    .into_oversized()
                    .ok_or_else(|| "body too large".to_owned());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |k: &str| std::env::var(k).ok();
    let (_emulator, builder) = match Config::builder_from_vars(env) {
        Ok(builder) => (None, builder),
        Err(_) => {
            let emu = dap_emulator::Emulator::start(dap_emulator::EmulatorConfig::default())?;
            let builder =
                Config::builder(emu.client_id(), emu.client_secret()).base_url(emu.base_url());
            println!("started a local DAP emulator at {}", emu.base_url());
            (Some(emu), builder)
        }
    };
    let config = builder
        .poll(PollPolicy::new(
            Duration::from_millis(50),
            Duration::from_millis(500),
        ))
        .build()?;
    let max_body = config.max_body_bytes();
    let mut session = Session::new(config, Instant::now(), jiff::Timestamp::now());

    session.start(
        Command::ListTables {
            namespace: "canvas".into(),
        },
        Instant::now(),
    );
    session.start(
        Command::Query {
            namespace: "canvas".into(),
            table: "accounts".into(),
            query: Query::snapshot(Format::Jsonl),
        },
        Instant::now(),
    );
    let mut remaining = 2;
    while remaining > 0 {
        match session.poll_output(Instant::now()) {
            Output::Send { id, request } => {
                println!("-> {} {}", request.method(), request.uri().path());
                match exchange(&request, max_body) {
                    Ok(response) => {
                        println!("<- {}", response.status());
                        session.handle_response(id, response, Instant::now())?;
                    }
                    Err(e) => {
                        println!("<- failed: {e}");
                        session.handle_failure(
                            id,
                            dap_proto::TransportFailure::new(
                                dap_proto::FailureKind::Broken,
                                "test",
                            ),
                            Instant::now(),
                        )?;
                    }
                }
            }
            Output::Done { result, .. } => {
                remaining -= 1;
                match result? {
                    Outcome::Tables(tables) => println!("tables: {}", tables.join(", ")),
                    Outcome::Query(q) => println!(
                        "job {} complete: {} object(s), schema version {}, next since {}",
                        q.job,
                        q.objects.len(),
                        q.schema_version,
                        q.range.next_since()
                    ),
                    other => println!("{other:?}"),
                }
            }
            Output::Wait(Some(deadline)) => {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            }
            Output::Wait(None) => break,
            _ => {}
        }
    }
    println!("logins: {}", session.logins());
    Ok(())
}
