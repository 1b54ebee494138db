//! How many of a kind of long-lived request (sync captures waiting for their job, dashboard event
//! streams) one API key may hold at once, and all keys together: one key cannot take every slot
//! from the others, nor the whole API's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Counts per holder (an API key's owner, or the operator) against two caps.
#[derive(Debug)]
pub struct Admission {
    per_holder: usize,
    total: usize,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// Why a slot was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The holder has `per_holder` slots already.
    Holder(usize),
    /// Every one of the `total` slots is taken.
    Total(usize),
}

/// One slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    holder: String,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

impl Admission {
    pub fn new(per_holder: usize, total: usize) -> Admission {
        Admission { per_holder: per_holder.max(1), total: total.max(1), held: Arc::default() }
    }

    pub fn try_admit(&self, holder: &str) -> Result<Slot, Refused> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.values().sum::<usize>() >= self.total {
            return Err(Refused::Total(self.total));
        }
        let mine = held.entry(holder.to_string()).or_insert(0);
        if *mine >= self.per_holder {
            return Err(Refused::Holder(self.per_holder));
        }
        *mine += 1;
        Ok(Slot { holder: holder.to_string(), held: self.held.clone() })
    }

    /// Slots held now, by every holder.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).values().sum()
    }

    /// Slots held now by `holder`.
    #[cfg(test)]
    fn held_by(&self, holder: &str) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).get(holder).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.holder) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_holder_is_capped_and_so_are_all_together() {
        let a = Admission::new(2, 3);
        let a1 = a.try_admit("a").unwrap();
        let _a2 = a.try_admit("a").unwrap();
        assert_eq!(a.try_admit("a").unwrap_err(), Refused::Holder(2));
        let b1 = a.try_admit("b").unwrap();
        assert_eq!(a.try_admit("c").unwrap_err(), Refused::Total(3));
        drop(b1);
        let _c1 = a.try_admit("c").unwrap();
        drop(a1);
        assert_eq!(a.held_by("a"), 1);
        let _a3 = a.try_admit("a").unwrap();
        assert_eq!(a.held_by("a"), 2);
    }
}
