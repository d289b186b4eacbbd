//! This replica's incident event bus. Every event the server stores is published here once it
//! is committed, and the clients of the incident flow subscribe: the event streams (SSE) that
//! feed the web page and the API, and Slack. The flow that writes an event knows none of them.
//!
//! A message without an event says only "this incident changed" (a status set, or an event
//! written by another replica sharing the store): streams read the store again; Slack posts
//! only what this replica wrote, so a thread hears each event once.

use crate::incidents::Event;
use std::sync::Arc;
use tokio::sync::broadcast;

/// One message on the bus.
#[derive(Debug, Clone)]
pub struct Published {
    pub incident: String,
    /// The stored event; none when the incident changed some other way.
    pub event: Option<Arc<Event>>,
}

/// A bounded broadcast: a subscriber that falls more than `capacity` messages behind is told
/// how many it missed (streams then read the store; Slack logs what it skipped).
pub struct Bus(broadcast::Sender<Published>);

impl Bus {
    pub fn new(capacity: usize) -> Bus {
        Bus(broadcast::channel(capacity.max(1)).0)
    }

    /// Tells every subscriber of a stored event.
    pub fn event(&self, incident: &str, event: Event) {
        let _ = self.0.send(Published {
            incident: incident.to_string(),
            event: Some(Arc::new(event)),
        });
    }

    /// Tells every subscriber that `incident` changed without an event of this replica.
    pub fn changed(&self, incident: &str) {
        let _ = self.0.send(Published {
            incident: incident.to_string(),
            event: None,
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::EventKind;

    fn event(seq: i64) -> Event {
        Event {
            seq,
            at: chrono::Utc::now(),
            kind: EventKind::Notice,
            actor: "oncall".into(),
            data: serde_json::json!({}),
        }
    }

    #[tokio::test]
    async fn every_subscriber_hears_each_event_in_order() {
        let bus = Bus::new(8);
        let (mut a, mut b) = (bus.subscribe(), bus.subscribe());
        bus.event("i1", event(1));
        bus.changed("i1");
        bus.event("i1", event(2));
        for rx in [&mut a, &mut b] {
            let seqs: Vec<Option<i64>> = (0..3)
                .map(|_| rx.try_recv().unwrap().event.map(|e| e.seq))
                .collect();
            assert_eq!(seqs, [Some(1), None, Some(2)]);
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_how_much_it_missed() {
        let bus = Bus::new(2);
        let mut rx = bus.subscribe();
        for seq in 1..=5 {
            bus.event("i1", event(seq));
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(3))
        ));
        assert_eq!(rx.try_recv().unwrap().event.map(|e| e.seq), Some(4));
    }
}
