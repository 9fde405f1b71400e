//! Pacing of query jobs: DAP allows a few job creations per minute per client
//! (5 at the time of writing), so tables run in parallel still start their queries
//! no faster than that, instead of running into 429 answers.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The decision: given the start times within the window (oldest first), when the
/// next start may happen (`now` if it may happen now).
pub fn next_start(
    starts: &VecDeque<Instant>,
    now: Instant,
    limit: usize,
    window: Duration,
) -> Instant {
    let recent: Vec<&Instant> = starts
        .iter()
        .filter(|t| now.duration_since(**t) < window)
        .collect();
    if recent.len() < limit.max(1) {
        return now;
    }
    // The start that must leave the window before another may begin.
    let idx = recent.len() - limit.max(1);
    *recent[idx] + window
}

/// Paces query starts across tasks.
#[derive(Debug)]
pub struct Pacer {
    limit: usize,
    window: Duration,
    starts: tokio::sync::Mutex<VecDeque<Instant>>,
}

impl Pacer {
    /// At most `per_minute` starts in any minute; 0 disables pacing.
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            limit: per_minute as usize,
            window: Duration::from_secs(60),
            starts: tokio::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// Waits until a query may start, and counts it.
    pub async fn start(&self) {
        if self.limit == 0 {
            return;
        }
        let mut starts = self.starts.lock().await;
        loop {
            let now = Instant::now();
            while starts
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.window)
            {
                starts.pop_front();
            }
            let at = next_start(&starts, now, self.limit, self.window);
            if at <= now {
                starts.push_back(now);
                return;
            }
            tracing::info!(
                "Waiting {} s before the next query, to stay within DAP's limit of {} queries a minute",
                at.duration_since(now).as_secs().max(1),
                self.limit
            );
            // Holding the lock keeps the waiting starts in order.
            tokio::time::sleep_until(at).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_then_waits_for_the_oldest() {
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        let mut starts = VecDeque::new();
        for i in 0..5 {
            let now = t0 + Duration::from_secs(i);
            assert_eq!(next_start(&starts, now, 5, w), now);
            starts.push_back(now);
        }
        let now = t0 + Duration::from_secs(10);
        assert_eq!(next_start(&starts, now, 5, w), t0 + w);
        // Once the oldest has left the window, a start may happen.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(next_start(&starts, later, 5, w), later);
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_starts() {
        let p = Pacer::per_minute(2);
        let t0 = Instant::now();
        p.start().await;
        p.start().await;
        assert!(Instant::now() - t0 < Duration::from_secs(1));
        p.start().await;
        assert!(Instant::now() - t0 >= Duration::from_secs(60));
        let off = Pacer::per_minute(0);
        off.start().await;
    }
}
