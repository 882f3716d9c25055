//! A deliberately hostile stage for the sandbox tests. Events whose `event_type` is `poison`
//! trigger the misbehaviour chosen by `config.mode`; every other event passes unchanged, so
//! the tests can check that only the poison event meets the stage's error policy.
//!
//! Modes: `loop` (spins forever), `alloc` (grows memory until it fails), `trap` (panics,
//! which traps), `wrong_count` (returns one outcome too few for a batch with poison in it),
//! `bad_json` (returns invalid metadata), `escape` (tries to read a file and open a socket;
//! reports `escaped` in metadata if either worked; `escape_path` in the config names one more
//! file to try, e.g. a lookup file the stage was granted), `error` (returns an error outcome).

use auditflow_sdk::{Config, Event, Outcome, Transform};

enum Mode {
    Loop,
    Alloc,
    Trap,
    WrongCount,
    BadJson,
    Escape,
    Error,
}

struct Hostile(Mode, Option<String>);

fn is_poison(e: &Event) -> bool {
    e.event_type == "poison"
}

impl Transform for Hostile {
    fn init(config: Config) -> Result<Self, String> {
        let mode = match config.get("mode").and_then(|m| m.as_str()) {
            Some("loop") => Mode::Loop,
            Some("alloc") => Mode::Alloc,
            Some("trap") => Mode::Trap,
            Some("wrong_count") => Mode::WrongCount,
            Some("bad_json") => Mode::BadJson,
            Some("escape") => Mode::Escape,
            Some("error") => Mode::Error,
            other => return Err(format!("unknown mode {other:?}")),
        };
        let escape_path = config.get("escape_path").and_then(|p| p.as_str()).map(str::to_owned);
        Ok(Hostile(mode, escape_path))
    }

    fn process(&mut self, mut event: Event) -> Outcome {
        if !is_poison(&event) {
            return Outcome::Keep(event);
        }
        match self.0 {
            Mode::Loop => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            Mode::Alloc => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Mode::Trap => panic!("poison event"),
            Mode::BadJson => {
                event.metadata = "{not json".into();
                Outcome::Keep(event)
            }
            Mode::Escape => {
                let file = std::fs::read("/etc/hostname").is_ok()
                    || std::fs::read_dir("/").is_ok()
                    || self.1.as_ref().is_some_and(|p| std::fs::read(p).is_ok());
                let socket = std::net::TcpStream::connect("127.0.0.1:5432").is_ok();
                if file || socket {
                    event.metadata = format!("{{\"escaped\": true, \"file\": {file}, \"socket\": {socket}}}");
                    Outcome::Keep(event)
                } else {
                    Outcome::Error("sandbox denied file and socket access".into())
                }
            }
            Mode::Error => Outcome::Error("refusing poison".into()),
            Mode::WrongCount => Outcome::Keep(event),
        }
    }

    fn process_batch(&mut self, events: Vec<Event>) -> Vec<Outcome> {
        let poisoned = events.iter().any(is_poison);
        let mut out: Vec<Outcome> = events.into_iter().map(|e| self.process(e)).collect();
        if matches!(self.0, Mode::WrongCount) && poisoned {
            out.pop();
        }
        out
    }
}

auditflow_sdk::export_transform!(Hostile);
