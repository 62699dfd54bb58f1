//! A tiny aggregate for store tests: each `Add` command emits `events` events at once,
//! so a half-written command shows up as a version that is not a multiple of `events`.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub total: u64,
    pub events_seen: u64,
    pub last_label: String,
}

#[derive(Debug, Clone)]
pub enum TallyCommand {
    Add {
        amount: u64,
        events: usize,
        label: String,
    },
    Nothing,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TallyEvent {
    Added { amount: u64, label: String },
}

impl DomainEvent for TallyEvent {
    fn event_type(&self) -> String {
        "Added".to_owned()
    }
    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("refused")]
pub struct Refused;

impl domain::Upcasting for Tally {
    fn upcasters() -> Vec<Box<dyn cqrs_es::persist::EventUpcaster>> {
        Vec::new()
    }
}

impl Aggregate for Tally {
    const TYPE: &'static str = "tally";
    type Command = TallyCommand;
    type Event = TallyEvent;
    type Error = Refused;
    type Services = ();

    async fn handle(
        &mut self,
        command: TallyCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Refused> {
        match command {
            TallyCommand::Add {
                amount,
                events,
                label,
            } => {
                for _ in 0..events {
                    let event = TallyEvent::Added {
                        amount,
                        label: label.clone(),
                    };
                    sink.write(event, self).await;
                }
                Ok(())
            }
            TallyCommand::Nothing => Ok(()),
            TallyCommand::Fail => Err(Refused),
        }
    }

    fn apply(&mut self, event: TallyEvent) {
        let TallyEvent::Added { amount, label } = event;
        self.total += amount;
        self.events_seen += 1;
        self.last_label = label;
    }
}

pub fn add(amount: u64, events: usize) -> TallyCommand {
    TallyCommand::Add {
        amount,
        events,
        label: format!("add-{amount}"),
    }
}
