//! Where log records go when standard error is not a terminal (a pipe to journald, a file):
//! records are gathered and written together, at most [`FLUSH_AFTER`] after the first of them
//! was logged. A write per record was a system call and a wake-up of the reader per record,
//! three per message. Warnings and errors go out at once, with everything logged before them,
//! as does a full buffer; what is left is written when the [`Guard`] is dropped and before a
//! panic's message. What the records say is left to `logging` and `json_log`.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The longest a record waits before it is written.
pub const FLUSH_AFTER: Duration = Duration::from_millis(20);

/// Records waiting are written at once when they reach this many octets.
const FULL: usize = 64 << 10;

struct State<W> {
    pending: Vec<u8>,
    sink: W,
    closed: bool,
}

impl<W: Write> State<W> {
    fn write_out(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // As with an unbuffered standard error, a record that cannot be written is lost;
        // there is nowhere else to say so.
        let _ = self.sink.write_all(&self.pending);
        let _ = self.sink.flush();
        self.pending.clear();
    }
}

struct Shared<W> {
    state: Mutex<State<W>>,
    /// Signalled when the first record arrives in an empty buffer, and on close.
    waiting: Condvar,
}

impl<W> Shared<W> {
    fn lock(&self) -> MutexGuard<'_, State<W>> {
        // A record is appended or written whole under the lock: the state stays usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer the subscriber is given (`with_writer`).
pub struct Batched<W> {
    shared: Arc<Shared<W>>,
}

/// One record on its way into the buffer.
pub struct Record<'a, W> {
    shared: &'a Shared<W>,
    urgent: bool,
}

impl<W: Write> Write for Record<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut state = self.shared.lock();
        let was_empty = state.pending.is_empty();
        state.pending.extend_from_slice(bytes);
        if self.urgent || state.closed || state.pending.len() >= FULL {
            state.write_out();
        } else if was_empty {
            self.shared.waiting.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + Send + 'static> MakeWriter<'a> for Batched<W> {
    type Writer = Record<'a, W>;

    fn make_writer(&'a self) -> Record<'a, W> {
        Record {
            shared: &self.shared,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Record<'a, W> {
        Record {
            shared: &self.shared,
            // In tracing's order the less verbose levels are the smaller ones.
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// Writes what is left, and stops the flushing thread, when dropped.
pub struct Guard<W: Write + Send + 'static> {
    shared: Arc<Shared<W>>,
    flusher: Option<JoinHandle<()>>,
}

impl<W: Write + Send + 'static> Drop for Guard<W> {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.waiting.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        self.shared.lock().write_out();
    }
}

/// Starts gathering records for `sink`, each written at most `after` after it was logged.
/// Also makes a panic write what is waiting before its message.
pub fn start<W: Write + Send + 'static>(sink: W, after: Duration) -> (Batched<W>, Guard<W>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            pending: Vec::with_capacity(FULL),
            sink,
            closed: false,
        }),
        waiting: Condvar::new(),
    });
    let flusher = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("log-output".into())
            .spawn(move || flush_loop(&shared, after))
            .ok()
    };
    let on_panic = Arc::downgrade(&shared);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // try_lock: the panic may have come from inside a write, holding the lock.
        if let Some(shared) = on_panic.upgrade()
            && let Ok(mut state) = shared.state.try_lock()
        {
            state.write_out();
        }
        previous(info);
    }));
    let guard = Guard {
        shared: Arc::clone(&shared),
        flusher,
    };
    // Without its thread nothing would write the records that wait: write each at once.
    if guard.flusher.is_none() {
        shared.lock().closed = true;
    }
    (Batched { shared }, guard)
}

fn flush_loop<W: Write>(shared: &Shared<W>, after: Duration) {
    let mut state = shared.lock();
    loop {
        while state.pending.is_empty() && !state.closed {
            state = shared
                .waiting
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        // Let the records of the next few milliseconds join the first. Only a close wakes
        // the wait early (the buffer is not empty, so records do not signal), and it ends it:
        // dropping the guard never waits out the delay.
        let deadline = Instant::now() + after;
        while !state.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match shared.waiting.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        state.write_out();
        if state.closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps each write the sink is given, separately.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<String>>>);

    impl Write for Writes {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
            self.0.lock().expect("writes").push(text);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Writes {
        fn taken(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().expect("writes"))
        }
    }

    fn logging_to(writes: &Writes, after: Duration) -> (impl tracing::Subscriber, Guard<Writes>) {
        let (batched, guard) = start(writes.clone(), after);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_writer(batched)
            .finish();
        (subscriber, guard)
    }

    #[test]
    fn records_wait_together_until_a_warning_takes_them_out_in_order() {
        let writes = Writes::default();
        let (subscriber, guard) = logging_to(&writes, Duration::from_secs(3600));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("one");
            tracing::info!("two");
            assert!(writes.taken().is_empty(), "info records wait");
            tracing::warn!("three");
            let written = writes.taken();
            assert_eq!(written.len(), 1, "{written:?}");
            let lines: Vec<&str> = written[0].lines().collect();
            assert_eq!(lines, [" INFO one", " INFO two", " WARN three"]);
            tracing::error!("four");
            assert_eq!(writes.taken(), ["ERROR four\n"]);
            tracing::info!("five");
        });
        drop(guard);
        assert_eq!(
            writes.taken(),
            [" INFO five\n"],
            "dropping the guard writes the rest"
        );
    }

    /// The flushing thread is inside its delay (an hour here) when the guard is dropped: the
    /// drop ends the delay and writes the record instead of waiting it out. Before, the thread
    /// slept the whole delay, and this test hung for an hour.
    #[test]
    #[expect(clippy::disallowed_methods, reason = "a plain test thread, no runtime")]
    fn dropping_the_guard_ends_a_delay_under_way() {
        let writes = Writes::default();
        let (subscriber, guard) = logging_to(&writes, Duration::from_secs(3600));
        tracing::subscriber::with_default(subscriber, || tracing::info!("waiting"));
        // Time for the thread to take the record's signal and start its delay.
        std::thread::sleep(Duration::from_millis(100));
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(guard);
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("the guard's drop returns without waiting out the delay");
        assert_eq!(writes.taken(), [" INFO waiting\n"]);
    }

    #[test]
    #[expect(clippy::disallowed_methods, reason = "a plain test thread, no runtime")]
    fn a_record_is_written_soon_after_it_was_logged_without_anything_else() {
        let writes = Writes::default();
        let (subscriber, _guard) = logging_to(&writes, Duration::from_millis(10));
        tracing::subscriber::with_default(subscriber, || tracing::info!("alone"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut written = Vec::new();
        while written.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            written = writes.taken();
        }
        assert_eq!(written, [" INFO alone\n"]);
    }

    #[test]
    fn a_full_buffer_is_written_at_once() {
        let writes = Writes::default();
        let (subscriber, _guard) = logging_to(&writes, Duration::from_secs(3600));
        let long = "x".repeat(1000);
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..(FULL / 1000 + 1) {
                tracing::info!("{long}");
            }
        });
        let written = writes.taken();
        assert_eq!(written.len(), 1, "one write for the full buffer");
        assert!(written[0].len() >= FULL);
        assert_eq!(written[0].lines().count(), FULL / 1000 + 1);
    }
}
