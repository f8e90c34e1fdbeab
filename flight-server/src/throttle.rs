//! Slows password guessing down: each client address has a budget of
//! failed logins that refills over time, and once it is spent its logins
//! are refused unchecked until the budget refills.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins a client may make in a burst.
const BURST: f64 = 5.0;
/// Failed logins per second a client regains, once past its burst.
const REFILL_PER_SECOND: f64 = 0.5;
/// Addresses remembered at most; the ones whose budget is full again are
/// forgotten first.
const MAX_CLIENTS: usize = 10_000;

/// Per-address budgets of failed logins.
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    clients: Mutex<HashMap<IpAddr, Budget>>,
}

#[derive(Debug, Clone, Copy)]
struct Budget {
    /// Failed logins still allowed, as of `at`.
    left: f64,
    at: Instant,
}

impl Budget {
    fn now(self, now: Instant) -> f64 {
        let regained = now.saturating_duration_since(self.at).as_secs_f64() * REFILL_PER_SECOND;
        (self.left + regained).min(BURST)
    }
}

impl LoginThrottle {
    /// `Err(wait)` when `client` has spent its budget: refuse its login
    /// without checking it, and say how long to wait.
    pub(crate) fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        match clients.get(&client) {
            Some(budget) => {
                let left = budget.now(Instant::now());
                if left >= 1.0 {
                    Ok(())
                } else {
                    Err(Duration::from_secs_f64((1.0 - left) / REFILL_PER_SECOND))
                }
            }
            None => Ok(()),
        }
    }

    /// Counts a failed login of `client`.
    pub(crate) fn failed(&self, client: IpAddr) {
        let now = Instant::now();
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, b| b.now(now) < BURST);
            if clients.len() >= MAX_CLIENTS {
                // Every remembered client is guessing: keep the memory
                // bounded, at the price of forgetting one of them.
                if let Some(any) = clients.keys().next().copied() {
                    clients.remove(&any);
                }
            }
        }
        let budget = clients.entry(client).or_insert(Budget {
            left: BURST,
            at: now,
        });
        *budget = Budget {
            left: (budget.now(now) - 1.0).max(0.0),
            at: now,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_past_its_budget_waits_and_others_do_not() {
        let throttle = LoginThrottle::default();
        let guesser: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..BURST as usize {
            throttle.check(guesser).unwrap();
            throttle.failed(guesser);
        }
        let wait = throttle.check(guesser).unwrap_err();
        assert!(wait > Duration::from_millis(1500), "{wait:?}");
        throttle.check(other).unwrap();
    }
}
