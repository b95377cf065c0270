//! The server-wide budget for message content held in memory while sessions read DATA and wait
//! for the spool. Each session reserves what it reads; when the budget is spent, the message is
//! read to its end without being kept and refused with 452 4.3.1, so a crowd of large
//! submissions meets a bound instead of the machine's memory. Framing is `io`'s.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Octets of message content all sessions together may hold.
#[derive(Debug, Clone)]
pub(crate) struct BodyBudget {
    octets: Arc<Semaphore>,
}

impl BodyBudget {
    pub(crate) fn new(octets: u64) -> BodyBudget {
        let permits = usize::try_from(octets)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        BodyBudget {
            octets: Arc::new(Semaphore::new(permits)),
        }
    }

    /// An empty reservation for one message.
    pub(crate) fn reservation(&self) -> Reservation {
        Reservation {
            budget: Arc::clone(&self.octets),
            held: None,
            spent: false,
        }
    }
}

/// What one message holds of the budget; given back when dropped (after the spool commit).
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
    spent: bool,
}

impl Reservation {
    /// Reserve `octets` more; false once the budget could not give them. From then on this
    /// message holds nothing and its content is not kept.
    pub(crate) fn grow(&mut self, octets: usize) -> bool {
        if self.spent {
            return false;
        }
        let Ok(wanted) = u32::try_from(octets) else {
            return self.spend();
        };
        match Arc::clone(&self.budget).try_acquire_many_owned(wanted) {
            Ok(permit) => {
                match &mut self.held {
                    Some(held) => held.merge(permit),
                    None => self.held = Some(permit),
                }
                true
            }
            Err(_) => self.spend(),
        }
    }

    fn spend(&mut self) -> bool {
        self.spent = true;
        self.held = None;
        false
    }

    /// Whether the budget ran out while this message was read.
    pub(crate) fn is_spent(&self) -> bool {
        self.spent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_give_it_back_when_dropped() {
        let budget = BodyBudget::new(100);
        let mut first = budget.reservation();
        assert!(first.grow(60));
        let mut second = budget.reservation();
        assert!(!second.grow(50), "only 40 octets are left");
        assert!(second.is_spent());
        assert!(!second.grow(1), "a spent reservation stays spent");
        drop(first);
        let mut third = budget.reservation();
        assert!(third.grow(100), "the first message's octets came back");
    }

    #[test]
    fn a_spent_reservation_gives_back_what_it_held() {
        let budget = BodyBudget::new(100);
        let mut message = budget.reservation();
        assert!(message.grow(70));
        assert!(!message.grow(70));
        let mut other = budget.reservation();
        assert!(other.grow(100));
    }
}
