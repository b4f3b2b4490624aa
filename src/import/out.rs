//! The vigil config being built: blocks of keys, each with the comment
//! that names where it came from; written out as TOML at the end.

use super::toml_out::{Doc, Value};

/// A table's keys, with comment lines above it.
#[derive(Debug, Clone, Default)]
pub struct Block {
    pub comment: Vec<String>,
    pub keys: Vec<Key>,
}

/// `name = value  # note`.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub value: Value,
    pub note: String,
}

impl Block {
    pub fn new(comment: impl Into<String>) -> Block {
        Block {
            comment: vec![comment.into()],
            keys: Vec::new(),
        }
    }

    /// Sets `name` (replacing an earlier value).
    pub fn set(&mut self, name: &str, value: Value, note: impl Into<String>) {
        let note = note.into();
        match self.keys.iter_mut().find(|k| k.name == name) {
            Some(k) => {
                k.value = value;
                k.note = note;
            }
            None => self.keys.push(Key {
                name: name.to_owned(),
                value,
                note,
            }),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.keys.iter().find(|k| k.name == name).map(|k| &k.value)
    }

    pub fn remove(&mut self, name: &str) {
        self.keys.retain(|k| k.name != name);
    }

    fn write(&self, doc: &mut Doc) {
        for k in &self.keys {
            doc.kv_note(&k.name, &k.value, &k.note);
        }
    }
}

/// A `[[server]]` and its locations.
#[derive(Debug, Clone, Default)]
pub struct Server {
    pub block: Block,
    pub locations: Vec<Block>,
}

/// A `[[vrrp.instance]]` and its `[vrrp.instance.track]`.
#[derive(Debug, Clone, Default)]
pub struct Instance {
    pub block: Block,
    pub track: Option<Block>,
}

/// The whole config.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub header: Vec<String>,
    pub http: Block,
    pub log: Block,
    /// `[upstream.<name>]`, in the order they were made.
    pub upstreams: Vec<(String, Block)>,
    /// Other named tables (`[limit_req_zone.api]`, `[map.tier]`): path, block.
    pub tables: Vec<(Vec<String>, Block)>,
    pub servers: Vec<Server>,
    pub instances: Vec<Instance>,
    pub sync_groups: Vec<Block>,
}

impl Output {
    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let mut doc = Doc::new();
        for line in &self.header {
            doc.comment(line);
        }
        for (name, block) in [("http", &self.http), ("log", &self.log)] {
            if block.keys.is_empty() {
                continue;
            }
            doc.blank();
            for c in &block.comment {
                doc.comment(c);
            }
            doc.table(&[name]);
            block.write(&mut doc);
        }
        for (name, block) in &self.upstreams {
            doc.blank();
            for c in &block.comment {
                doc.comment(c);
            }
            doc.table(&["upstream", name]);
            block.write(&mut doc);
        }
        for (path, block) in &self.tables {
            doc.blank();
            for c in &block.comment {
                doc.comment(c);
            }
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            doc.table(&path);
            block.write(&mut doc);
        }
        for server in &self.servers {
            doc.blank();
            for c in &server.block.comment {
                doc.comment(c);
            }
            doc.array_table(&["server"]);
            server.block.write(&mut doc);
            for loc in &server.locations {
                doc.blank();
                for c in &loc.comment {
                    doc.comment(c);
                }
                doc.array_table(&["server", "location"]);
                loc.write(&mut doc);
            }
        }
        for inst in &self.instances {
            doc.blank();
            for c in &inst.block.comment {
                doc.comment(c);
            }
            doc.array_table(&["vrrp", "instance"]);
            inst.block.write(&mut doc);
            if let Some(track) = &inst.track {
                for c in &track.comment {
                    doc.comment(c);
                }
                doc.table(&["vrrp", "instance", "track"]);
                track.write(&mut doc);
            }
        }
        for group in &self.sync_groups {
            doc.blank();
            for c in &group.comment {
                doc.comment(c);
            }
            doc.array_table(&["vrrp", "sync_group"]);
            group.write(&mut doc);
        }
        doc.finish()
    }
}
