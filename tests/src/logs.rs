//! Log capture at TRACE level, for the secrets checks.

use super::*;

/// A buffer that a `tracing-subscriber` `fmt` layer writes every event into, at TRACE
/// level, without ANSI colours.
///
/// [`LogCapture::new`] keeps the events emitted with `tracing` (the toolkit's own).
/// [`LogCapture::with_log_records`] also keeps the records of libraries that use the
/// `log` crate (ureq, rustls), bridged into `tracing` the way
/// `tracing_subscriber::fmt().init()` does by default in applications.
#[derive(Clone, Default)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
    log_records: bool,
}

/// Installs, once per process, a global default subscriber that records nothing but
/// answers "ask me each time" for every callsite and allows every level; then rebuilds
/// the callsite interest cache.
///
/// A capture is a thread's scoped subscriber, and other tests run on other threads with
/// none. Without this, a callsite first reached on such a thread can have its interest
/// cached as "never" (or the global level hint left below TRACE), and the capture then
/// misses those events at random: a short capture proves nothing about secrets.
pub fn ask_each_time() {
    use tracing::subscriber::Interest;
    struct AskEachTime;
    impl tracing::Subscriber for AskEachTime {
        fn register_callsite(&self, _: &'static tracing::Metadata<'static>) -> Interest {
            Interest::sometimes()
        }
        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(tracing::level_filters::LevelFilter::TRACE)
        }
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            false
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        // Fails only when the test binary installed its own global subscriber, which
        // then decides; the capture's assertion on its length still guards the result.
        let _ = tracing::subscriber::set_global_default(AskEachTime);
    });
    tracing::callsite::rebuild_interest_cache();
}

/// The writer [`LogCapture`] hands the subscriber.
pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter(Arc::clone(&self.buffer))
    }
}

impl LogCapture {
    /// An empty capture of `tracing` events.
    pub fn new() -> Self {
        ask_each_time();
        Self::default()
    }

    /// An empty capture of `tracing` events and of `log` records. Installs the
    /// process-wide `log` to `tracing` bridge (at TRACE) on first use; captures made
    /// with [`LogCapture::new`] keep ignoring bridged records.
    pub fn with_log_records() -> Self {
        static BRIDGE: std::sync::Once = std::sync::Once::new();
        BRIDGE.call_once(|| {
            // Fails only when another logger is installed: then there is nothing to
            // bridge from, and the scenario's assertions still hold for what arrives.
            let _ = tracing_log::LogTracer::init();
        });
        ask_each_time();
        Self {
            log_records: true,
            ..Self::default()
        }
    }

    /// A dispatcher logging every event and span field at TRACE level into the buffer.
    pub fn dispatch(&self) -> tracing::Dispatch {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let log_records = self.log_records;
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_thread_names(true)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_writer(self.clone())
            .with_filter(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_filter(tracing_subscriber::filter::filter_fn(move |meta| {
                // Records bridged from `log` carry a `log.target` field.
                log_records || meta.fields().field("log.target").is_none()
            }));
        tracing::Dispatch::new(tracing_subscriber::registry().with(layer))
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }
}
