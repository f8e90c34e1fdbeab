//! Running a program on a pseudo-terminal, as a person at a terminal
//! would: type keys, wait for text to show up.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A program running with a pseudo-terminal as its controlling terminal
/// and as its standard input, output and error.
pub struct Terminal {
    master: File,
    child: Child,
    screen: Arc<Screen>,
    /// How much of the cleaned output earlier `expect`s consumed.
    seen: usize,
}

/// What the program wrote, filled by a reader thread.
#[derive(Default)]
struct Screen {
    /// Everything written, and whether the program closed the terminal.
    output: Mutex<(Vec<u8>, bool)>,
    changed: Condvar,
}

impl Terminal {
    /// Starts `command` on a new 200x50 terminal.
    pub fn spawn(mut command: Command) -> Terminal {
        let mut master = -1;
        let mut slave = -1;
        let size = libc::winsize {
            ws_row: 50,
            ws_col: 200,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors into the given integers;
        // no name buffer and no termios are passed, the size is valid.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the terminal"));
        command
            .stdin(stdio(&slave))
            .stdout(stdio(&slave))
            .stderr(stdio(&slave));
        // SAFETY: only async-signal-safe calls between fork and exec: a
        // new session, whose controlling terminal becomes the one on
        // stdin, so Ctrl-C on it signals the program.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start the program on the terminal");
        // Close this side's copies of the slave, so reading the master
        // ends when the program exits.
        drop(command);
        drop(slave);

        let master = File::from(master);
        let mut reader = master.try_clone().expect("dup the master");
        let screen = Arc::new(Screen::default());
        let shared = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                // EIO once the program has closed the terminal.
                let read = reader.read(&mut buffer).unwrap_or(0);
                // A test that failed while holding the lock poisoned it;
                // the output is still worth keeping.
                let mut output = shared
                    .output
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if read == 0 {
                    output.1 = true;
                    shared.changed.notify_all();
                    return;
                }
                output.0.extend_from_slice(&buffer[..read]);
                shared.changed.notify_all();
            }
        });
        Terminal {
            master,
            child,
            screen,
            seen: 0,
        }
    }

    /// Types `keys` (`\r` is Enter, `\x03` is Ctrl-C).
    pub fn type_keys(&mut self, keys: &str) {
        self.master
            .write_all(keys.as_bytes())
            .and_then(|()| self.master.flush())
            .expect("type on the terminal");
    }

    /// Waits up to `timeout` for `text` to appear in the output after what
    /// earlier calls consumed; returns the output up to and including it,
    /// with terminal control sequences and carriage returns removed.
    pub fn expect(&mut self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut screen = self.screen.output.lock().expect("screen lock");
        loop {
            let output = clean(&screen.0);
            if let Some(found) = output[self.seen.min(output.len())..].find(text) {
                let start = self.seen;
                self.seen += found + text.len();
                return output[start..self.seen].to_string();
            }
            let now = Instant::now();
            if screen.1 || now > deadline {
                let why = if screen.1 {
                    "the program closed the terminal"
                } else {
                    "timed out"
                };
                // Fail without holding the lock, so it is not poisoned.
                drop(screen);
                panic!(
                    "{why} waiting for {text:?}; after the part already matched, the terminal shows:\n{}",
                    &output[self.seen.min(output.len())..]
                );
            }
            screen = self
                .screen
                .changed
                .wait_timeout(screen, deadline - now)
                .expect("screen lock")
                .0;
        }
    }

    /// Waits up to `timeout` for the program to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the program") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let output = clean(&self.screen.output.lock().expect("screen lock").0);
                panic!("the program did not exit; the terminal shows:\n{output}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Terminal output as text: escape sequences (cursor moves, colours,
/// mode switches) and carriage returns removed.
pub fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ESC \.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' | '\x07' => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn cleans_terminal_output() {
    assert_eq!(
        clean(b"\x1b[?2004hfibers=> \x1b[K\x1b[6nSELECT 1\r\n\x1b]0;title\x07ok\x1b[0m\r\n"),
        "fibers=> SELECT 1\nok\n"
    );
}
