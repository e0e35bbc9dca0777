//! A run's figures: printed as one human line, or as one JSON line
//! (`--json`) for the benchmark runner.

use serde_json::{Map, Value};

pub struct Report {
    fields: Map<String, Value>,
    pub human: String,
}

impl Report {
    pub fn new(mode: &str) -> Report {
        let mut fields = Map::new();
        fields.insert("mode".into(), Value::from(mode));
        Report {
            fields,
            human: String::new(),
        }
    }

    pub fn int(&mut self, key: &str, value: u64) -> &mut Report {
        self.fields.insert(key.into(), Value::from(value));
        self
    }

    pub fn text(&mut self, key: &str, value: &str) -> &mut Report {
        self.fields.insert(key.into(), Value::from(value));
        self
    }

    pub fn num(&mut self, key: &str, value: f64) -> &mut Report {
        let rounded = (value * 1000.0).round() / 1000.0;
        self.fields.insert(key.into(), Value::from(rounded));
        self
    }

    pub fn print(&self, json: bool) {
        if json {
            println!("{}", Value::Object(self.fields.clone()));
        } else {
            println!("{}", self.human);
            let server: Vec<String> = self
                .fields
                .iter()
                .filter(|(k, _)| k.starts_with("server_"))
                .map(|(k, v)| format!("{}={v}", k.trim_start_matches("server_")))
                .collect();
            if !server.is_empty() {
                println!("server: {}", server.join(" "));
            }
        }
    }
}
