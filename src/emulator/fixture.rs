//! The fixture: table definitions (columns, keys, navigation properties) and seed rows.
//!
//! The default fixture is embedded from `default_fixture.json`; `--fixture FILE` replaces it.
//! The format is documented in the README ("Rehearsing with the emulator", "The fixture").

use std::path::Path;

use serde::Deserialize;

/// The embedded default fixture.
pub const DEFAULT_FIXTURE: &str = include_str!("default_fixture.json");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub tables: Vec<TableDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    pub logical_name: String,
    pub entity_set: String,
    pub primary_id: String,
    pub primary_name: String,
    pub columns: Vec<ColumnDef>,
    #[serde(default)]
    pub keys: Vec<KeyDef>,
    /// One-to-many navigation properties usable for deep insert (e.g. `order_details`).
    #[serde(default)]
    pub navigations: Vec<NavigationDef>,
    /// On create, at least one of these column groups must be fully set (booleans true).
    #[serde(default)]
    pub require_one_of: Vec<Vec<String>>,
    /// Seed rows, created through the normal write path (so `x@odata.bind` works).
    #[serde(default)]
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ColumnType {
    String,
    Memo,
    Integer,
    Decimal,
    Money,
    Double,
    Boolean,
    DateTime,
    Uniqueidentifier,
    Picklist,
    Lookup,
    Customer,
    Owner,
}

impl ColumnType {
    pub fn is_lookup(self) -> bool {
        matches!(
            self,
            ColumnType::Lookup | ColumnType::Customer | ColumnType::Owner
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum RequiredLevel {
    #[default]
    None,
    Recommended,
    ApplicationRequired,
    SystemRequired,
}

impl RequiredLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RequiredLevel::None => "None",
            RequiredLevel::Recommended => "Recommended",
            RequiredLevel::ApplicationRequired => "ApplicationRequired",
            RequiredLevel::SystemRequired => "SystemRequired",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    #[serde(default)]
    pub max_length: Option<usize>,
    #[serde(default)]
    pub required: RequiredLevel,
    /// Target tables (logical names) of a lookup.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Options of a picklist.
    #[serde(default)]
    pub options: Vec<PicklistOption>,
}

impl ColumnDef {
    /// The single-valued navigation property used with `@odata.bind` for a lookup target:
    /// `pricelevelid` for a single-target lookup, `customerid_account` for a polymorphic one.
    pub fn navigation_name(&self, target: &str) -> String {
        if self.targets.len() == 1 {
            self.name.clone()
        } else {
            format!("{}_{}", self.name, target)
        }
    }

    /// Whether `name` is [`Self::navigation_name`] of `target` (without building it).
    pub fn is_navigation_name(&self, target: &str, name: &str) -> bool {
        if self.targets.len() == 1 {
            self.name == name
        } else {
            name.strip_prefix(self.name.as_str())
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|rest| rest == target)
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PicklistOption {
    pub value: i64,
    pub label: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDef {
    pub name: String,
    pub attributes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NavigationDef {
    pub name: String,
    /// Logical name of the related (many) table.
    pub table: String,
    /// The lookup column on the related table that points back here.
    pub lookup: String,
}

impl TableDef {
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }
}

impl Fixture {
    pub fn parse(text: &str) -> Result<Fixture, String> {
        let fixture: Fixture = serde_json::from_str(text).map_err(|e| e.to_string())?;
        fixture.check()?;
        Ok(fixture)
    }

    pub fn load(path: &Path) -> Result<Fixture, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Fixture::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn default_fixture() -> Fixture {
        Fixture::parse(DEFAULT_FIXTURE).expect("the embedded default fixture is valid")
    }

    /// Structural checks that the rest of the emulator relies on.
    fn check(&self) -> Result<(), String> {
        let names: Vec<&str> = self
            .tables
            .iter()
            .map(|t| t.logical_name.as_str())
            .collect();
        for (i, table) in self.tables.iter().enumerate() {
            if names[..i].contains(&table.logical_name.as_str()) {
                return Err(format!("table '{}' is defined twice", table.logical_name));
            }
            for key in &table.keys {
                for attribute in &key.attributes {
                    match table.column(attribute) {
                        Some(c) if !c.column_type.is_lookup() => {}
                        _ => {
                            return Err(format!(
                                "key '{}' of table '{}' names '{}', which is not a plain column",
                                key.name, table.logical_name, attribute
                            ))
                        }
                    }
                }
            }
            for column in &table.columns {
                if column.column_type.is_lookup() && column.targets.is_empty() {
                    return Err(format!(
                        "lookup '{}.{}' has no targets",
                        table.logical_name, column.name
                    ));
                }
                for target in &column.targets {
                    if !names.contains(&target.as_str()) {
                        return Err(format!(
                            "lookup '{}.{}' targets unknown table '{}'",
                            table.logical_name, column.name, target
                        ));
                    }
                }
            }
            for nav in &table.navigations {
                let related = self.tables.iter().find(|t| t.logical_name == nav.table);
                match related.and_then(|t| t.column(&nav.lookup)) {
                    Some(c) if c.targets.contains(&table.logical_name) => {}
                    _ => {
                        return Err(format!(
                            "navigation '{}' of '{}' needs a lookup '{}.{}' targeting it",
                            nav.name, table.logical_name, nav.table, nav.lookup
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}
