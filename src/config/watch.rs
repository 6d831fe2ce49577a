//! Reload on file change (`drawbridge run --watch`): the configuration file and every
//! file it names (`secret_file`, `value_file`, `private_key_file`, `ca_file`) are polled,
//! and a change that has stayed the same for one more poll triggers the same reload as
//! SIGHUP.
//!
//! Polling, not inotify: it sees every way a file is replaced — an editor writing in
//! place, `mv` over it, and Kubernetes swapping the `..data` symlink of a mounted
//! ConfigMap or Secret (the path then resolves to another inode) — with nothing to
//! re-arm. A file is compared by device, inode, size and modification time after
//! following symlinks. Waiting for one quiet poll keeps a half-written file from being
//! read; a file that is still invalid afterwards is refused like any bad reload and is
//! not retried until it changes again.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// How one file looked at one poll; `None`: missing or unreadable.
pub type Stamp = Option<(u64, u64, u64, i64, i64)>;

/// Stamps of the watched files, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature(Vec<Stamp>);

impl Signature {
    /// Looks at every file now (one `stat` each).
    pub fn of(paths: &[PathBuf]) -> Signature {
        Signature(
            paths
                .iter()
                .map(|p| {
                    std::fs::metadata(p)
                        .ok()
                        .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
                })
                .collect(),
        )
    }

    #[cfg(test)]
    fn from_stamps(stamps: Vec<Stamp>) -> Signature {
        Signature(stamps)
    }
}

/// The change detector, free of I/O: fed one signature per poll.
#[derive(Debug)]
pub struct Watch {
    /// What the running configuration was loaded from (or last refused).
    settled: Signature,
    /// A change seen at the previous poll, waiting to be seen again unchanged.
    pending: Option<Signature>,
}

impl Watch {
    /// `current`: the files as the running configuration was loaded from them.
    pub fn new(current: Signature) -> Watch {
        Watch {
            settled: current,
            pending: None,
        }
    }

    /// One poll. True: the files changed and then stayed the same for a whole poll
    /// interval — reload now. The new state counts as settled whether or not the reload
    /// accepts it.
    pub fn poll(&mut self, now: Signature) -> bool {
        if now == self.settled {
            self.pending = None;
            return false;
        }
        if self.pending.as_ref() == Some(&now) {
            self.settled = now;
            self.pending = None;
            return true;
        }
        self.pending = Some(now);
        false
    }

    /// After any reload (by signal or by this watch): the files as just loaded, possibly
    /// a different set of them.
    pub fn settle(&mut self, current: Signature) {
        self.settled = current;
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(stamps: &[(u64, i64)]) -> Signature {
        Signature::from_stamps(
            stamps
                .iter()
                .map(|&(ino, mtime)| Some((1, ino, 10, mtime, 0)))
                .collect(),
        )
    }

    #[test]
    fn nothing_changed_nothing_happens() {
        let mut w = Watch::new(sig(&[(1, 100)]));
        for _ in 0..3 {
            assert!(!w.poll(sig(&[(1, 100)])));
        }
    }

    #[test]
    fn a_change_reloads_once_it_has_held_for_a_poll() {
        let mut w = Watch::new(sig(&[(1, 100), (2, 100)]));
        assert!(!w.poll(sig(&[(1, 101), (2, 100)])), "first sight: wait");
        assert!(w.poll(sig(&[(1, 101), (2, 100)])), "held: reload");
        assert!(
            !w.poll(sig(&[(1, 101), (2, 100)])),
            "settled: no second reload"
        );
    }

    #[test]
    fn a_file_still_being_written_waits() {
        let mut w = Watch::new(sig(&[(1, 100)]));
        assert!(!w.poll(sig(&[(1, 101)])));
        assert!(!w.poll(sig(&[(1, 102)])), "changed again: wait again");
        assert!(w.poll(sig(&[(1, 102)])));
    }

    #[test]
    fn a_change_undone_before_it_held_does_nothing() {
        let mut w = Watch::new(sig(&[(1, 100)]));
        assert!(!w.poll(sig(&[(1, 101)])));
        assert!(!w.poll(sig(&[(1, 100)])));
        assert!(!w.poll(sig(&[(1, 100)])));
    }

    #[test]
    fn a_replaced_file_and_a_vanished_one_are_changes() {
        // Another inode at the same path (mv, or a ConfigMap's symlink swap).
        let mut w = Watch::new(sig(&[(1, 100)]));
        assert!(!w.poll(sig(&[(9, 100)])));
        assert!(w.poll(sig(&[(9, 100)])));
        // A secret file that disappears: reload, which refuses and keeps the old state.
        let mut w = Watch::new(sig(&[(1, 100), (2, 100)]));
        let gone = Signature::from_stamps(vec![Some((1, 1, 10, 100, 0)), None]);
        assert!(!w.poll(gone.clone()));
        assert!(w.poll(gone.clone()));
        assert!(
            !w.poll(gone),
            "a refused state is not retried until it changes"
        );
    }

    #[test]
    fn a_signal_reload_settles_the_watch() {
        let mut w = Watch::new(sig(&[(1, 100)]));
        assert!(!w.poll(sig(&[(1, 101)])));
        w.settle(sig(&[(1, 101)])); // SIGHUP reloaded it meanwhile
        assert!(!w.poll(sig(&[(1, 101)])));
    }

    #[test]
    fn stamps_follow_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.yaml");
        let missing = dir.path().join("absent");
        std::fs::write(&file, "a").unwrap();
        let paths = vec![file.clone(), missing];
        let before = Signature::of(&paths);
        assert!(before.0[0].is_some());
        assert!(before.0[1].is_none());
        assert_eq!(before, Signature::of(&paths));
        // Replaced by another file (another inode), as `mv` or a symlink swap does.
        let next = dir.path().join("next");
        std::fs::write(&next, "bb").unwrap();
        std::fs::rename(&next, &file).unwrap();
        assert_ne!(before, Signature::of(&paths));
    }
}
