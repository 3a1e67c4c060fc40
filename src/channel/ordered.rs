//! Replies matched to their requests by order, for the protocols whose
//! server answers requests one at a time in the order it read them (QMP
//! without out-of-band execution, qtest).
//!
//! Each request gets a ticket, unique in the process (so a ticket of one
//! machine is unknown to every other). Its ticket joins the in-flight FIFO
//! at the moment its bytes join the channel's output queue, under the same
//! lock, so FIFO order is wire order even with many threads sending. Each
//! reply takes the oldest ticket in flight. A caller that gave up leaves
//! its ticket in the FIFO with nobody collecting: its late reply still
//! takes that place and is dropped (counted), and the next reply goes to
//! the next request. A request that never reached the wire is withdrawn.

use std::collections::{HashMap, VecDeque};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Channel, Closed, Protocol, SendError};
use crate::deadline::Deadline;

static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

/// The requests of a channel and their replies.
#[derive(Debug)]
pub(crate) struct OrderedReplies<R> {
    /// Tickets of the requests on the wire, oldest first.
    in_flight: VecDeque<u64>,
    /// Tickets someone will collect; `Some` once the reply is in.
    replies: HashMap<u64, Option<R>>,
    /// Replies nobody collects (late replies to requests whose caller gave
    /// up, replies to no request): dropped and counted.
    stray: u64,
}

impl<R> Default for OrderedReplies<R> {
    fn default() -> Self {
        OrderedReplies {
            in_flight: VecDeque::new(),
            replies: HashMap::new(),
            stray: 0,
        }
    }
}

impl<R> OrderedReplies<R> {
    /// Route a reply to the oldest request in flight.
    pub(crate) fn answer(&mut self, reply: R) {
        match self
            .in_flight
            .pop_front()
            .and_then(|t| self.replies.get_mut(&t))
        {
            Some(slot) => *slot = Some(reply),
            None => self.stray += 1,
        }
    }

    /// Replies dropped because nobody collected them.
    pub(crate) fn stray(&self) -> u64 {
        self.stray
    }

    /// Whether `ticket` is still to be collected.
    pub(crate) fn is_outstanding(&self, ticket: u64) -> bool {
        self.replies.contains_key(&ticket)
    }

    fn sent(&mut self, ticket: u64) {
        self.in_flight.push_back(ticket);
        self.replies.insert(ticket, None);
    }

    fn withdrawn(&mut self, ticket: u64) {
        self.in_flight.retain(|&t| t != ticket);
        self.replies.remove(&ticket);
    }

    fn take(&mut self, ticket: u64) -> Option<R> {
        match self.replies.get(&ticket) {
            Some(Some(_)) => self.replies.remove(&ticket).flatten(),
            _ => None,
        }
    }

    /// Nobody will collect `ticket`: its reply, when it comes, is dropped.
    fn abandon(&mut self, ticket: u64) {
        self.replies.remove(&ticket);
    }
}

/// A protocol whose replies are matched by order.
pub(crate) trait Ordered {
    type Reply;
    fn ordered(&mut self) -> &mut OrderedReplies<Self::Reply>;
}

impl<P: Protocol + Ordered> Channel<P> {
    /// Send a request (see [`Channel::send`] for `deadline`) and return
    /// its ticket. A request partly written stays in flight (its reply
    /// will come) with nobody collecting it.
    pub(crate) fn send_request(
        &self,
        line: &[u8],
        fd: Option<BorrowedFd<'_>>,
        deadline: Option<Deadline>,
    ) -> Result<u64, SendError> {
        let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
        let sent = self.send(
            line,
            fd,
            deadline,
            |p| p.ordered().sent(ticket),
            |p| p.ordered().withdrawn(ticket),
        );
        match sent {
            Ok(()) => Ok(ticket),
            Err(e) => {
                self.lock().proto.ordered().abandon(ticket);
                Err(e)
            }
        }
    }

    /// The reply to `ticket`: `Ok(None)` at the deadline (the ticket is
    /// kept, or abandoned if `abandon_on_timeout`); a closed channel
    /// consumes it.
    pub(crate) fn wait_reply(
        &self,
        ticket: u64,
        deadline: Deadline,
        abandon_on_timeout: bool,
    ) -> Result<Option<P::Reply>, Closed> {
        let got = self.wait_for(deadline, None, |st| st.proto.ordered().take(ticket));
        if got.is_err() || (abandon_on_timeout && matches!(got, Ok(None))) {
            self.lock().proto.ordered().abandon(ticket);
        }
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_replies_keep_their_place() {
        let mut o = OrderedReplies::<u32>::default();
        for t in [1, 2, 3] {
            o.sent(t);
        }
        o.abandon(1);
        o.answer(10); // the late reply to 1: dropped
        o.answer(20);
        assert_eq!(o.take(1), None);
        assert_eq!(o.take(2), Some(20));
        assert_eq!(o.stray(), 1);
        assert!(o.is_outstanding(3));
        o.withdrawn(3);
        o.answer(99); // a reply to nothing
        assert_eq!(o.stray(), 2);
        assert!(!o.is_outstanding(3));
    }
}
