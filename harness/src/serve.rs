//! What the harness's small HTTP servers (the IMDS stub and the fault
//! proxy) share: a mutex lock that survives a panicked holder, and an
//! accept loop on its own thread, one thread per connection, stopped and
//! joined when its handle drops.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How often the loops look at the stop flag (also the connections' read
/// timeout).
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// Locks `mutex`, also after a thread panicked holding it.
/// Readies an accepted connection for blocking reads that wake every
/// [`TICK`] (to notice a stop) and writes that give up after 5 s.
pub(crate) fn blocking_with_ticks(stream: &std::net::TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(TICK))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An accept loop on a non-blocking listener, stopped and joined on drop.
#[derive(Debug)]
pub(crate) struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Accepts on `listener` until dropped. `setup` runs first, on the
    /// accept thread (so a blocking HTTP client it builds never meets the
    /// test's async runtime), and makes the handler each connection runs on
    /// a thread of its own, with the stop flag; `name` labels accept errors.
    pub(crate) fn start<F>(
        listener: TcpListener,
        name: &'static str,
        setup: impl FnOnce() -> F + Send + 'static,
    ) -> Acceptor
    where
        F: Fn(TcpStream, &AtomicBool) + Clone + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                let handler = setup();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (handler, stop) = (handler.clone(), stop.clone());
                            thread::spawn(move || handler(stream, &stop));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(TICK),
                        Err(e) => {
                            eprintln!("[{name}] accept failed: {e}");
                            thread::sleep(TICK);
                        }
                    }
                }
            })
        };
        Acceptor {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
