//! The download machine on a virtual clock, against a fake storage: the window, the
//! order of results, URL refreshes before expiry (no 403) and after one (in a batch),
//! and cancel-on-first-error; URLs fetched on demand, a batch at a time.

use std::io::Write as _;
use std::time::{Duration, Instant};

use dap_proto::testing::origin;
use dap_proto::{
    Command, Config, DataRange, Download, DownloadError, DownloadOutput, DownloadSpec, Fetch,
    Format, HeadAction, JobId, ObjectId, ObjectUrl, Outcome, PresignedUrl, QueryResult,
    TransferError, UrlSet,
};

fn config() -> Config {
    Config::builder("id", "secret")
        .retry(dap_proto::RetryPolicy::new(
            3,
            Duration::from_millis(100),
            Duration::from_secs(1),
        ))
        .build()
        .unwrap()
}

/// The URL of object `i` from URL generation `generation`, valid 60 s.
fn url(i: usize, generation: u32) -> PresignedUrl {
    PresignedUrl::new(format!(
        "https://store.example/out/part-{i}.json.gz?X-Amz-Expires=60&gen={generation}"
    ))
}

fn result(objects: usize, issued: Instant) -> QueryResult {
    QueryResult {
        namespace: "canvas".into(),
        table: "t".into(),
        job: JobId::new("j"),
        format: Format::Jsonl,
        expires_at: None,
        schema_version: 1,
        range: DataRange::Snapshot {
            at: "2026-11-29T00:00:00Z".parse().unwrap(),
        },
        objects: (0..objects)
            .map(|i| ObjectUrl {
                id: ObjectId::new(format!("j/{i}")),
                url: url(i, 1),
            })
            .collect(),
        pending: Vec::new(),
        urls_issued_at: issued,
    }
}

/// The result of a query run with URLs on demand: `objects` objects, none with a URL.
fn lazy_result(objects: usize, issued: Instant) -> QueryResult {
    let mut r = result(objects, issued);
    r.pending = r.objects.drain(..).map(|o| o.id).collect();
    r
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A storage that refuses URLs of generations below `valid_from` and serves object
/// `corrupt` as garbage.
#[derive(Default)]
struct Store {
    valid_from: u32,
    corrupt: Option<usize>,
    gets: Vec<(usize, u32, u16)>,
    /// Refuses the first URL of this object (a 403), whatever its generation.
    refuse_once: Option<usize>,
    /// Signs the URLs of object `.0` with the file name of object `.1`.
    alias: Option<(usize, usize)>,
}

impl Store {
    /// The URL of object `i` from URL generation `generation`.
    fn url(&self, i: usize, generation: u32) -> PresignedUrl {
        match self.alias {
            Some((a, b)) if a == i => PresignedUrl::new(format!(
                "https://store.example/other/part-{b}.json.gz?X-Amz-Expires=60&gen={generation}"
            )),
            _ => url(i, generation),
        }
    }

    /// The answer to an object-URL call for `objects` from generation `generation`.
    fn urls(&self, objects: &[ObjectId], generation: u32, now: Instant) -> UrlSet {
        let urls = objects
            .iter()
            .map(|id| {
                let i = id.as_str().trim_start_matches("j/").parse().unwrap();
                ObjectUrl {
                    id: id.clone(),
                    url: self.url(i, generation),
                }
            })
            .collect();
        UrlSet {
            urls,
            issued_at: now,
        }
    }

    fn serve(&mut self, fetch: &mut Fetch, now: Instant) {
        let request = fetch.take_request();
        let query = request.uri().query().unwrap_or("");
        let generation: u32 = query.rsplit("gen=").next().unwrap().parse().unwrap();
        let path = request.uri().path();
        let i: usize = path
            .rsplit('/')
            .next()
            .unwrap()
            .trim_start_matches("part-")
            .trim_end_matches(".json.gz")
            .parse()
            .unwrap();
        let refuse = self.refuse_once == Some(i);
        if refuse {
            self.refuse_once = None;
        }
        let status = if generation < self.valid_from || refuse {
            403
        } else {
            200
        };
        self.gets.push((i, generation, status));
        let body = match self.corrupt {
            Some(c) if c == i => b"definitely not gzip".to_vec(),
            _ => gzip(format!("{{\"i\":{i}}}\n").as_bytes()),
        };
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, body.len().into());
        let status = http::StatusCode::from_u16(status).unwrap();
        if let HeadAction::ReadBody { .. } = fetch.handle_head(status, &headers, now) {
            if fetch.handle_body(&body, now, |_| {}).is_continue() {
                fetch.handle_body_end(now, |_| {});
            }
        }
    }
}

/// What a run saw.
#[derive(Default)]
struct Run {
    url_calls: Vec<Vec<ObjectId>>,
    commits: Vec<String>,
    discards: Vec<String>,
    most_lent: usize,
    cancelled_seen: bool,
    /// Objects started (lent for the first time) when each URL call went out.
    started_at_call: Vec<usize>,
    /// The most URLs ever held for objects not started yet.
    most_spare: usize,
}

/// Drives `download` to its end: every fetch the window allows goes out, they all take
/// `each` of virtual time, come back, and the machine is polled again.
fn drive(
    download: &mut Download,
    store: &mut Store,
    now: &mut Instant,
    each: Duration,
) -> (Result<Vec<String>, DownloadError>, Run) {
    let mut run = Run::default();
    let mut generation = 1;
    let mut signed = std::collections::HashSet::new();
    let mut started = std::collections::HashSet::new();
    for _ in 0..1000 {
        let mut lent = Vec::new();
        loop {
            match download.poll_output(*now) {
                DownloadOutput::Fetch(f) => {
                    started.insert(f.object().clone());
                    lent.push(f);
                }
                DownloadOutput::Session(Command::ObjectUrls { objects }) => {
                    generation += 1;
                    let set = store.urls(&objects, generation, *now);
                    run.started_at_call.push(started.len());
                    signed.extend(objects.iter().cloned());
                    run.most_spare = run.most_spare.max(signed.difference(&started).count());
                    run.url_calls.push(objects);
                    download.handle_session_result(Ok(Outcome::Urls(set)), *now);
                }
                DownloadOutput::Commit(c) => run.commits.push(c.target),
                DownloadOutput::Discard(t) => run.discards.push(t),
                DownloadOutput::Done(r) => {
                    let job = download.job_dir().to_owned();
                    let paths = |d: Vec<dap_proto::TransferSummary>| {
                        d.into_iter()
                            .map(|s| format!("{job}/{}", s.file_name))
                            .collect()
                    };
                    return (r.map(paths), run);
                }
                DownloadOutput::Wait(Some(at)) if lent.is_empty() => *now = at,
                DownloadOutput::Wait(_) => break,
                other => panic!("{other:?}"),
            }
        }
        run.most_lent = run.most_lent.max(lent.len());
        *now += each;
        for mut fetch in lent {
            run.cancelled_seen |= fetch.is_cancelled();
            store.serve(&mut fetch, *now);
            download.handle_fetch(fetch, *now);
        }
    }
    panic!("the download did not end");
}

/// Downloads `objects` objects, `window` at a time, from a store that refuses URL
/// generations before `valid_from` and serves object `corrupt` corrupt; the URLs were
/// issued at the origin, the download starts `late` after it and each round of fetches
/// takes `each`.
fn scenario(
    store: (u32, Option<usize>),
    window: usize,
    objects: usize,
    late: Duration,
    each: Duration,
) -> (Result<Vec<String>, DownloadError>, Run, Store) {
    let (valid_from, corrupt) = store;
    let mut store = Store {
        valid_from,
        corrupt,
        ..Store::default()
    };
    let t0 = origin();
    let mut now = t0 + late;
    let spec = DownloadSpec::files(window, false, 7);
    let mut download = Download::new(&config(), &result(objects, t0), spec).unwrap();
    let (done, run) = drive(&mut download, &mut store, &mut now, each);
    (done, run, store)
}

#[test]
fn urls_are_refreshed_before_they_expire_without_a_403() {
    // URL generation 1 is dead at storage; the client knows they are 40 s old (of 60).
    let (done, run, store) = scenario(
        (2, None),
        2,
        3,
        Duration::from_secs(40),
        Duration::from_secs(1),
    );
    assert_eq!(done.unwrap().len(), 3);
    assert_eq!(run.url_calls.len(), 1, "one batch for the three URLs");
    assert_eq!(run.url_calls[0].len(), 3);
    assert!(
        store.gets.iter().all(|(_, _, status)| *status == 200),
        "{:?}",
        store.gets
    );
    assert_eq!(store.gets.len(), 3);
}

#[test]
fn a_long_download_refreshes_urls_as_it_goes_in_order_within_its_window() {
    // Each round of fetches takes 20 s: URLs issued at t0 go stale at t0 + 30 s.
    let (done, run, store) = scenario((1, None), 2, 8, Duration::ZERO, Duration::from_secs(20));
    let order: Vec<String> = (0..8).map(|i| format!("job_j/part-{i}.json.gz")).collect();
    assert_eq!(done.unwrap(), order, "results in the order of the query");
    assert_eq!(run.most_lent, 2, "the window is 2");
    assert!(!run.url_calls.is_empty(), "URLs were refreshed before use");
    assert!(
        store.gets.iter().all(|(_, _, s)| *s == 200),
        "{:?}",
        store.gets
    );
    let mut committed = run.commits.clone();
    committed.sort();
    let mut expected = order.clone();
    expected.sort();
    assert_eq!(committed, expected);
}

#[test]
fn a_refused_url_refreshes_the_urls_issued_with_it_in_one_batch() {
    let (done, run, store) = scenario((2, None), 1, 3, Duration::ZERO, Duration::from_millis(10));
    assert_eq!(done.unwrap().len(), 3);
    assert_eq!(run.url_calls.len(), 1);
    assert_eq!(run.url_calls[0].len(), 3);
    let refused = store.gets.iter().filter(|(_, _, s)| *s == 403).count();
    assert_eq!(refused, 1, "{:?}", store.gets);
}

#[test]
fn the_first_failure_cancels_the_others_and_discards_their_files() {
    let (done, run, store) = scenario(
        (1, Some(1)),
        4,
        6,
        Duration::ZERO,
        Duration::from_millis(10),
    );
    match done {
        Err(DownloadError::Transfer(TransferError::Corrupt { object, .. })) => {
            assert_eq!(object.as_str(), "j/1");
        }
        other => panic!("{other:?}"),
    }
    assert!(run.cancelled_seen, "the lent fetches saw the cancellation");
    assert!(
        store.gets.len() <= 4,
        "nothing started after the failure: {:?}",
        store.gets
    );
    assert!(
        run.discards.iter().any(|d| d.contains(".part-1.json.gz.")),
        "{:?}",
        run.discards
    );
    assert!(
        run.discards
            .iter()
            .all(|d| d.ends_with(".0000000000000007.partial"))
    );
}

#[test]
fn twenty_thousand_objects_start_nothing_up_front() {
    let t0 = origin();
    let spec = DownloadSpec::files(4, false, 7);
    let mut download = Download::new(&config(), &result(20_000, t0), spec).unwrap();
    assert_eq!(download.objects(), 20_000);
    let mut lent = 0;
    while let DownloadOutput::Fetch(_) = download.poll_output(t0) {
        lent += 1;
    }
    assert_eq!(lent, 4, "only the window's objects start");
}

#[test]
fn a_url_refresh_that_omits_an_object_is_an_internal_error() {
    let t0 = origin();
    let spec = DownloadSpec::files(1, false, 7);
    let mut download = Download::new(&config(), &result(2, t0), spec).unwrap();
    let now = t0 + Duration::from_secs(50);
    let DownloadOutput::Session(Command::ObjectUrls { objects }) = download.poll_output(now) else {
        panic!("stale URLs are refreshed first");
    };
    assert_eq!(objects.len(), 2);
    let set = UrlSet {
        urls: Vec::new(),
        issued_at: now,
    };
    download.handle_session_result(Ok(Outcome::Urls(set)), now);
    match download.poll_output(now) {
        DownloadOutput::Done(Err(DownloadError::Urls(dap_proto::Error::Internal(text)))) => {
            assert!(text.contains("no URL for object j/0"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

/// A configuration asking for URLs `batch` at a time.
fn batched(batch: usize) -> Config {
    Config::builder("id", "secret")
        .url_batch_size(batch)
        .build()
        .unwrap()
}

/// Downloads `result` with `spec` from `store`, fetching URLs `batch` at a time; the
/// URLs it carries were issued at the origin, where the download starts, and each round
/// of fetches takes 10 ms.
fn run_batched(
    mut store: Store,
    spec: DownloadSpec,
    result: QueryResult,
    batch: usize,
) -> (Result<Vec<String>, DownloadError>, Run, Store) {
    let objects = result.object_count();
    let mut now = origin();
    let mut download = Download::from_result(&batched(batch), result, spec).unwrap();
    assert_eq!(download.objects(), objects);
    let (done, run) = drive(
        &mut download,
        &mut store,
        &mut now,
        Duration::from_millis(10),
    );
    (done, run, store)
}

/// [`run_batched`] of `objects` objects without URLs into files, `window` at a time.
fn lazy_scenario(
    store: Store,
    window: usize,
    objects: usize,
    batch: usize,
) -> (Result<Vec<String>, DownloadError>, Run, Store) {
    let spec = DownloadSpec::files(window, false, 7);
    run_batched(store, spec, lazy_result(objects, origin()), batch)
}

#[test]
fn urls_on_demand_come_a_batch_at_a_time_as_the_window_reaches_them() {
    let (done, run, store) = lazy_scenario(Store::default(), 4, 250, 100);
    let order: Vec<String> = (0..250)
        .map(|i| format!("job_j/part-{i}.json.gz"))
        .collect();
    assert_eq!(
        done.unwrap(),
        order,
        "every object, in the order of the query"
    );
    let sizes: Vec<usize> = run.url_calls.iter().map(Vec::len).collect();
    assert_eq!(sizes, [100, 100, 50], "three batches, no refresh");
    let asked: Vec<String> = run
        .url_calls
        .concat()
        .iter()
        .map(|id| id.to_string())
        .collect();
    let all: Vec<String> = (0..250).map(|i| format!("j/{i}")).collect();
    assert_eq!(asked, all, "each object once, in order");
    // Each batch is asked for once fewer than a window's worth of URLs are left, and
    // goes out when nothing else is to do: here, where the four fetches of a round start
    // together, when the last of the batch has started.
    assert_eq!(run.started_at_call, [0, 100, 200]);
    assert!(
        run.most_spare < 100 + 4,
        "at most a batch and a window of unused URLs: {}",
        run.most_spare
    );
    assert_eq!(run.most_lent, 4, "the window is 4");
    assert_eq!(store.gets.len(), 250);
    assert!(store.gets.iter().all(|(_, _, s)| *s == 200));
}

#[test]
fn urls_on_demand_keep_at_most_a_batch_unused_for_streamed_records() {
    // Records go one object at a time: each batch is asked for when the last is used.
    let spec = DownloadSpec::records(Format::Jsonl).unwrap();
    let (done, run, _) = run_batched(Store::default(), spec, lazy_result(25, origin()), 10);
    assert_eq!(done.unwrap().len(), 25);
    let sizes: Vec<usize> = run.url_calls.iter().map(Vec::len).collect();
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(run.started_at_call, [0, 10, 20]);
    assert_eq!(run.most_spare, 10, "never more than one batch");
}

#[test]
fn a_name_seen_in_an_earlier_batch_fails_the_download_before_its_second_file() {
    let store = Store {
        alias: Some((150, 3)),
        ..Store::default()
    };
    let (done, run, store) = lazy_scenario(store, 4, 250, 100);
    match done {
        Err(DownloadError::Argument(e)) => assert!(
            e.to_string()
                .contains("two objects of job j share the file name part-3.json.gz"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(run.url_calls.len(), 2);
    assert!(
        store.gets.iter().all(|(i, _, _)| *i < 100),
        "nothing of the second batch started: {:?}",
        store.gets
    );
    let third = run
        .commits
        .iter()
        .filter(|c| c.ends_with("/part-3.json.gz"))
        .count();
    assert_eq!(third, 1, "one file of the name: {:?}", run.commits);
}

#[test]
fn a_refused_url_fetched_on_demand_is_fetched_again() {
    let store = Store {
        refuse_once: Some(5),
        ..Store::default()
    };
    let (done, run, store) = lazy_scenario(store, 2, 10, 100);
    assert_eq!(done.unwrap().len(), 10);
    assert_eq!(run.url_calls.len(), 2, "{:?}", run.url_calls);
    assert_eq!(run.url_calls[0].len(), 10);
    assert_eq!(
        run.url_calls[1][0],
        ObjectId::new("j/5"),
        "the refused one first"
    );
    let fives: Vec<(u32, u16)> = store
        .gets
        .iter()
        .filter(|(i, _, _)| *i == 5)
        .map(|&(_, g, s)| (g, s))
        .collect();
    assert_eq!(
        fives,
        [(2, 403), (3, 200)],
        "refused, then served with a fresh URL"
    );
}

#[test]
fn a_result_with_urls_and_pending_objects_downloads_both_in_order() {
    let mut mixed = result(7, origin());
    mixed.pending = mixed.objects.drain(4..).map(|o| o.id).collect();
    assert_eq!(mixed.object_count(), 7);
    let spec = DownloadSpec::files(2, false, 7);
    let (done, run, _) = run_batched(Store::default(), spec, mixed, 3);
    let order: Vec<String> = (0..7).map(|i| format!("job_j/part-{i}.json.gz")).collect();
    assert_eq!(done.unwrap(), order);
    let asked: Vec<Vec<String>> = run
        .url_calls
        .iter()
        .map(|c| c.iter().map(|id| id.to_string()).collect())
        .collect();
    assert_eq!(asked, [vec!["j/4", "j/5", "j/6"]], "only the pending ones");
}

#[test]
fn the_next_batch_of_urls_is_asked_for_before_the_window_runs_dry() {
    // Fetches come back one at a time: the next batch goes out while three URLs of the
    // first are still unused, so the window never waits for it.
    let now = origin();
    let spec = DownloadSpec::files(4, false, 7);
    let mut download = Download::from_result(&batched(10), lazy_result(20, now), spec).unwrap();
    let mut store = Store::default();
    let mut lent = std::collections::VecDeque::new();
    let (mut started, mut calls, mut done) = (0, Vec::new(), None);
    while done.is_none() {
        loop {
            match download.poll_output(now) {
                DownloadOutput::Fetch(f) => {
                    started += 1;
                    lent.push_back(f);
                }
                DownloadOutput::Session(Command::ObjectUrls { objects }) => {
                    calls.push((started, objects.len()));
                    let set = store.urls(&objects, 2, now);
                    download.handle_session_result(Ok(Outcome::Urls(set)), now);
                }
                DownloadOutput::Commit(_) => {}
                DownloadOutput::Done(r) => {
                    done = Some(r);
                    break;
                }
                DownloadOutput::Wait(_) => break,
                other => panic!("{other:?}"),
            }
        }
        if let Some(mut fetch) = lent.pop_front() {
            store.serve(&mut fetch, now);
            download.handle_fetch(fetch, now);
        }
    }
    assert_eq!(done.unwrap().unwrap().len(), 20);
    assert_eq!(
        calls,
        [(0, 10), (7, 10)],
        "(objects started, URLs asked for) at each call"
    );
    // At most a batch and a window less one (13) URLs were ever unused.
}
