//! The in-memory store: one table per fixture table, a unique index per alternate key, and an
//! undo log so that a changeset, a bulk message or a deep insert can be rolled back whole.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::fixture::TableDef;

/// A stored row. `fields` holds the primary id, plain columns and `_<lookup>_value` columns.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: Uuid,
    pub seq: u64,
    pub version: u64,
    pub fields: Map<String, Value>,
    /// Lookup column → logical name of the table its value points to.
    pub lookup_targets: HashMap<String, String>,
}

pub struct TableState {
    /// Shared, so that a write can hold the definition while it changes the rows.
    pub def: Arc<TableDef>,
    rows: HashMap<Uuid, Record>,
    /// One unique index per alternate key (same order as `def.keys`): key value → row id.
    indexes: Vec<HashMap<String, Uuid>>,
}

#[derive(Debug)]
pub enum StoreError {
    DuplicateId(Uuid),
    KeyConflict { key: String, value: String },
}

enum Undo {
    Inserted { table: usize, id: Uuid },
    Replaced { table: usize, old: Box<Record> },
    Removed { table: usize, old: Box<Record> },
}

pub struct Store {
    pub tables: Vec<TableState>,
    undo: Vec<Undo>,
    next_seq: u64,
}

/// A new random (version 4) id. Drawn from the thread's cryptographically secure generator
/// (`rand`'s `thread_rng`) instead of asking the kernel for every id (`Uuid::new_v4` makes a
/// `getrandom` system call each time; the emulator makes one per created row).
pub fn new_id() -> Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// Index key of a value: strings compare case-insensitively, like Dataverse's SQL collation.
pub fn index_value(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.to_lowercase()),
        other => Some(other.to_string()),
    }
}

/// Human form of a key value for messages.
pub fn display_key(values: &[&Value]) -> String {
    values
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl TableState {
    fn key_of(&self, key_index: usize, fields: &Map<String, Value>) -> Option<String> {
        let key = &self.def.keys[key_index];
        let mut parts = Vec::with_capacity(key.attributes.len());
        for attribute in &key.attributes {
            parts.push(index_value(fields.get(attribute).unwrap_or(&Value::Null))?);
        }
        Some(parts.join("\u{1f}"))
    }

    pub fn get(&self, id: &Uuid) -> Option<&Record> {
        self.rows.get(id)
    }

    pub fn row_count(&self) -> usize {
        self.rows.len()
    }

    /// Rows in creation order.
    pub fn rows(&self) -> Vec<&Record> {
        let mut rows: Vec<&Record> = self.rows.values().collect();
        rows.sort_by_key(|r| r.seq);
        rows
    }

    /// Finds a row by the values of one alternate key (in the key's attribute order).
    pub fn find_by_key(&self, key_index: usize, values: &[Value]) -> Option<Uuid> {
        let mut parts = Vec::with_capacity(values.len());
        for value in values {
            parts.push(index_value(value)?);
        }
        self.indexes[key_index].get(&parts.join("\u{1f}")).copied()
    }

    /// Key values held by more than one row, computed by scanning the rows (not the index),
    /// so that a broken index would show up here.
    pub fn duplicate_keys(&self) -> Vec<Value> {
        let mut duplicates = Vec::new();
        for (key_index, key) in self.def.keys.iter().enumerate() {
            let mut seen: HashMap<String, Vec<Uuid>> = HashMap::new();
            for row in self.rows.values() {
                if let Some(k) = self.key_of(key_index, &row.fields) {
                    seen.entry(k).or_default().push(row.id);
                }
            }
            let mut found: Vec<_> = seen.into_iter().filter(|(_, ids)| ids.len() > 1).collect();
            found.sort();
            for (value, ids) in found {
                duplicates.push(serde_json::json!({"key": key.name, "value": value, "ids": ids}));
            }
        }
        duplicates
    }

    fn check_keys(
        &self,
        fields: &Map<String, Value>,
        except: Option<Uuid>,
    ) -> Result<(), StoreError> {
        for (key_index, key) in self.def.keys.iter().enumerate() {
            if let Some(k) = self.key_of(key_index, fields) {
                if let Some(existing) = self.indexes[key_index].get(&k) {
                    if Some(*existing) != except {
                        let values: Vec<&Value> = key
                            .attributes
                            .iter()
                            .map(|a| fields.get(a).unwrap_or(&Value::Null))
                            .collect();
                        return Err(StoreError::KeyConflict {
                            key: key.name.clone(),
                            value: display_key(&values),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn index(&mut self, record: &Record) {
        for key_index in 0..self.def.keys.len() {
            if let Some(k) = self.key_of(key_index, &record.fields) {
                self.indexes[key_index].insert(k, record.id);
            }
        }
    }

    fn unindex(&mut self, record: &Record) {
        for key_index in 0..self.def.keys.len() {
            if let Some(k) = self.key_of(key_index, &record.fields) {
                if self.indexes[key_index].get(&k) == Some(&record.id) {
                    self.indexes[key_index].remove(&k);
                }
            }
        }
    }

    fn put(&mut self, record: Record) {
        self.index(&record);
        self.rows.insert(record.id, record);
    }

    fn take(&mut self, id: &Uuid) -> Option<Record> {
        let record = self.rows.remove(id)?;
        self.unindex(&record);
        Some(record)
    }
}

impl Store {
    pub fn new(tables: Vec<TableDef>) -> Store {
        let tables = tables
            .into_iter()
            .map(|def| TableState {
                indexes: vec![HashMap::new(); def.keys.len()],
                def: Arc::new(def),
                rows: HashMap::new(),
            })
            .collect();
        Store {
            tables,
            undo: Vec::new(),
            next_seq: 1,
        }
    }

    pub fn table_by_set(&self, entity_set: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.def.entity_set == entity_set)
    }

    pub fn table_by_logical(&self, logical_name: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.def.logical_name == logical_name)
    }

    pub fn table(&self, table: usize) -> &TableState {
        &self.tables[table]
    }

    pub fn def(&self, table: usize) -> &TableDef {
        &self.tables[table].def
    }

    /// The definition of `table`, to keep while the store is borrowed mutably (no deep copy).
    pub fn shared_def(&self, table: usize) -> Arc<TableDef> {
        self.tables[table].def.clone()
    }

    pub fn count_by_set(&self, entity_set: &str) -> usize {
        self.table_by_set(entity_set)
            .map(|t| self.tables[t].row_count())
            .unwrap_or(0)
    }

    /// Inserts a new row; fails on a duplicate id or an alternate-key collision.
    pub fn insert(
        &mut self,
        table: usize,
        id: Uuid,
        fields: Map<String, Value>,
        lookup_targets: HashMap<String, String>,
    ) -> Result<(), StoreError> {
        let state = &mut self.tables[table];
        if state.rows.contains_key(&id) {
            return Err(StoreError::DuplicateId(id));
        }
        state.check_keys(&fields, None)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        state.put(Record {
            id,
            seq,
            version: seq,
            fields,
            lookup_targets,
        });
        self.undo.push(Undo::Inserted { table, id });
        Ok(())
    }

    /// Replaces the fields of an existing row (the caller merges old and new values).
    pub fn update(
        &mut self,
        table: usize,
        id: Uuid,
        fields: Map<String, Value>,
        lookup_targets: HashMap<String, String>,
    ) -> Result<(), StoreError> {
        let version = self.next_seq;
        let state = &mut self.tables[table];
        state.check_keys(&fields, Some(id))?;
        let old = state.take(&id).expect("update of an existing row");
        self.next_seq += 1;
        let record = Record {
            id,
            seq: old.seq,
            version,
            fields,
            lookup_targets,
        };
        self.tables[table].put(record);
        self.undo.push(Undo::Replaced {
            table,
            old: Box::new(old),
        });
        Ok(())
    }

    pub fn delete(&mut self, table: usize, id: Uuid) -> Option<Record> {
        let old = self.tables[table].take(&id)?;
        self.undo.push(Undo::Removed {
            table,
            old: Box::new(old.clone()),
        });
        Some(old)
    }

    /// A point to roll back to.
    pub fn savepoint(&self) -> usize {
        self.undo.len()
    }

    /// Undoes every change made since `savepoint`.
    pub fn rollback_to(&mut self, savepoint: usize) {
        while self.undo.len() > savepoint {
            match self.undo.pop().expect("undo entry") {
                Undo::Inserted { table, id } => {
                    self.tables[table].take(&id);
                }
                Undo::Replaced { table, old } => {
                    self.tables[table].take(&old.id);
                    self.tables[table].put(*old);
                }
                Undo::Removed { table, old } => self.tables[table].put(*old),
            }
        }
    }

    /// Forgets the undo log once a top-level request has finished.
    pub fn release(&mut self) {
        self.undo.clear();
    }
}
