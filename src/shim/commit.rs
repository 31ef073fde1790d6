//! Group commit of the records that requests carry: workers validate a
//! record and queue it with its [`Reply`]; one committer thread takes what
//! is queued and records it as one group ([`commit_groups`], the loop
//! `hero_usage_record --stdin` runs too: one chunk, its fsync and the
//! directory's, then each record linked, deduplicated and checked for
//! conflicts as alone), and only then answers each request. Records that
//! arrive during a commit form the next group; no timer holds one back. An
//! error fails the whole group: nothing of it is acknowledged.

use super::http::Response;
use super::server::Reply;
use crate::error::{Exit, Kind};
use crate::record::Validated;
use crate::recording::{GroupSink, Written, commit_groups};
use crate::spool::Spool;
use anyhow::Result;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, Sender};

/// The answer to one record of a group of `group`: what became of it, or
/// the error that failed the group.
pub type Answer = fn(Result<&Written, &anyhow::Error>, group: usize) -> Response;

/// The queue into the committer thread.
pub struct Commits {
    queue: Sender<(Reply, Validated)>,
    answer: Answer,
}

impl Commits {
    /// Start the committer thread on `spool`.
    /// A panic there (a bug) ends the shim with 70, the panic logged:
    /// records would otherwise all be refused while `/healthz` says ok, and
    /// its supervisor restarts it. What was not acknowledged is retried by
    /// its caller; the spool needs nothing after a crash.
    pub fn start(spool: Spool, answer: Answer) -> std::io::Result<Commits> {
        let (queue, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || {
                let done = std::panic::catch_unwind(AssertUnwindSafe(|| run(&spool, &rx, answer)));
                if done.is_err() {
                    std::process::exit(i32::from(Exit::Failed(Kind::Internal).code()));
                }
            })?;
        Ok(Commits { queue, answer })
    }

    /// Queue a valid record; its request is answered once the group that
    /// holds it is durable.
    pub fn submit(&self, reply: Reply, record: Validated) {
        if let Err(mpsc::SendError((reply, _))) = self.queue.send((reply, record)) {
            let e = anyhow::anyhow!("the committer thread is gone (a bug); see the shim's log");
            reply.send((self.answer)(Err(&e), 1));
        }
    }
}

/// The committer thread. In debug builds `HERO_USAGE_TEST_SHIM_GROUP=N`
/// makes the first group wait for N records, so that a test can put
/// records into one group without racing the clock.
fn run(spool: &Spool, rx: &Receiver<(Reply, Validated)>, answer: Answer) {
    let mut sink = Answers(answer);
    let first = crate::failpoint::test_knob("HERO_USAGE_TEST_SHIM_GROUP")
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(n) = first {
        let (tx, group) = mpsc::channel();
        for item in rx.iter().take(n) {
            let _ = tx.send(item);
        }
        drop(tx);
        let _ = commit_groups(spool, &group, &mut sink);
    }
    // The sink never fails, so this returns when the queue closes.
    let _ = commit_groups(spool, rx, &mut sink);
}

/// Answers each request of a group.
struct Answers(Answer);

impl GroupSink<(Reply, Validated)> for Answers {
    type Tag = Reply;

    fn admit(&mut self, item: (Reply, Validated)) -> Result<Option<(Reply, Validated)>> {
        Ok(Some(item))
    }

    fn answer(&mut self, replies: Vec<Reply>, written: Result<Vec<Written>>) -> Result<()> {
        let group = replies.len();
        match written {
            Ok(written) => {
                for (reply, w) in replies.into_iter().zip(&written) {
                    reply.send((self.0)(Ok(w), group));
                }
            }
            Err(e) => {
                for reply in replies {
                    reply.send((self.0)(Err(&e), group));
                }
            }
        }
        Ok(())
    }
}
