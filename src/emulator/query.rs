//! Query options on reads: `$select`, `$filter` (`eq` joined by `and`, with parameter
//! aliases such as `@table='salesorder'`), `$top`, `$expand` (metadata only) and `$count`.

use serde_json::{Map, Value};

use super::odata_url::{parse_literal, parse_query};
use super::response::{codes, ApiError, ApiResult};
use super::store::index_value;

#[derive(Debug, Default, Clone)]
pub struct QueryOptions {
    pub select: Option<Vec<String>>,
    pub filter: Vec<Comparison>,
    pub top: Option<usize>,
    pub expand: Vec<String>,
    pub count: bool,
}

/// `path eq literal`
#[derive(Debug, Clone)]
pub struct Comparison {
    pub path: String,
    pub value: Value,
}

fn unsupported(message: String) -> ApiError {
    ApiError::bad_request(codes::PAYLOAD_ERROR, message)
}

impl QueryOptions {
    pub fn parse(query: &str) -> ApiResult<QueryOptions> {
        let pairs = parse_query(query);
        let aliases: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k.starts_with('@'))
            .cloned()
            .collect();
        let mut options = QueryOptions::default();
        for (name, value) in &pairs {
            match name.as_str() {
                "$select" => {
                    options.select = Some(value.split(',').map(|s| s.trim().to_string()).collect())
                }
                "$filter" => options.filter = parse_filter(value, &aliases)?,
                "$top" => {
                    options.top = Some(value.trim().parse().map_err(|_| {
                        unsupported(format!(
                            "Invalid value '{value}' for $top query option found."
                        ))
                    })?)
                }
                "$expand" => options.expand = split_expand(value),
                "$count" => options.count = value == "true",
                "$orderby" | "$skiptoken" => {
                    return Err(unsupported(format!(
                        "The query option '{name}' is not supported by the emulator."
                    )))
                }
                n if n.starts_with('@') => {}
                n if n.starts_with('$') => {
                    return Err(unsupported(format!(
                        "The query parameter '{n}' is not supported by the emulator."
                    )))
                }
                _ => {}
            }
        }
        Ok(options)
    }

    pub fn matches(&self, row: &Map<String, Value>) -> bool {
        self.filter.iter().all(|c| {
            let actual = lookup_path(row, &c.path);
            match (&c.value, actual) {
                (Value::Null, None) | (Value::Null, Some(Value::Null)) => true,
                (expected, Some(actual)) => {
                    index_value(expected) == index_value(actual) || numbers_equal(expected, actual)
                }
                _ => false,
            }
        })
    }

    pub fn wants_expand(&self, name: &str) -> bool {
        self.expand
            .iter()
            .any(|e| e == name || e.starts_with(&format!("{name}(")))
    }

    /// Applies `$select` to a row (annotations such as `@odata.etag` are kept).
    pub fn project(&self, row: Map<String, Value>, always: &[&str]) -> Map<String, Value> {
        match &self.select {
            None => row,
            Some(columns) => row
                .into_iter()
                .filter(|(k, _)| {
                    k.starts_with('@') || always.contains(&k.as_str()) || columns.contains(k)
                })
                .collect(),
        }
    }
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn lookup_path<'a>(row: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('/');
    let mut current = row.get(parts.next()?)?;
    for part in parts {
        current = current.get(part)?;
    }
    Some(current)
}

/// Top-level comma split of `$expand` (commas inside parentheses belong to the item).
fn split_expand(value: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut depth = 0;
    for c in value.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(String::new());
                continue;
            }
            _ => {}
        }
        items.last_mut().expect("one item").push(c);
    }
    items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Literal(Value),
    Open,
    Close,
}

fn tokenize(text: &str) -> ApiResult<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            tokens.push(Token::Open);
            i += 1;
        } else if c == ')' {
            tokens.push(Token::Close);
            i += 1;
        } else if c == '\'' {
            let start = i;
            i += 1;
            loop {
                if i >= chars.len() {
                    return Err(unsupported(format!(
                        "Unterminated string literal in $filter '{text}'."
                    )));
                }
                if chars[i] == '\'' {
                    if i + 1 < chars.len() && chars[i + 1] == '\'' {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            let literal: String = chars[start..i].iter().collect();
            tokens.push(Token::Literal(
                parse_literal(&literal).expect("a quoted literal parses"),
            ));
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '(' && chars[i] != ')'
            {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        }
    }
    Ok(tokens)
}

/// Parses `a eq 'x' and (b eq 1)`; anything else is refused with a clear message.
fn parse_filter(text: &str, aliases: &[(String, String)]) -> ApiResult<Vec<Comparison>> {
    let tokens: Vec<Token> = tokenize(text)?
        .into_iter()
        .filter(|t| *t != Token::Open && *t != Token::Close)
        .collect();
    let refuse = || {
        unsupported(format!(
            "The $filter '{text}' is not supported by the emulator (only 'column eq literal' joined by 'and')."
        ))
    };
    let mut comparisons = Vec::new();
    let mut i = 0;
    loop {
        let path = match tokens.get(i) {
            Some(Token::Word(w)) => w.clone(),
            _ => return Err(refuse()),
        };
        if tokens.get(i + 1) != Some(&Token::Word("eq".into())) {
            return Err(refuse());
        }
        let value = match tokens.get(i + 2) {
            Some(Token::Literal(v)) => v.clone(),
            Some(Token::Word(w)) if w.starts_with('@') => {
                let raw = aliases
                    .iter()
                    .find(|(k, _)| k == w)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| {
                        unsupported(format!("The parameter alias '{w}' is not defined."))
                    })?;
                parse_literal(&raw).ok_or_else(refuse)?
            }
            Some(Token::Word(w)) => parse_literal(w).ok_or_else(refuse)?,
            _ => return Err(refuse()),
        };
        comparisons.push(Comparison { path, value });
        i += 3;
        match tokens.get(i) {
            None => break,
            Some(Token::Word(w)) if w == "and" => i += 1,
            _ => return Err(refuse()),
        }
    }
    Ok(comparisons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filter_with_aliases_and_quotes() {
        let q = QueryOptions::parse(
            "$filter=sdkmessageid/name%20eq%20@message%20and%20primaryobjecttypecode%20eq%20@table&@message='UpsertMultiple'&@table='salesorder'",
        )
        .unwrap();
        assert_eq!(q.filter.len(), 2);
        let row = json!({"sdkmessageid": {"name": "UpsertMultiple"}, "primaryobjecttypecode": "salesorder"});
        assert!(q.matches(row.as_object().unwrap()));
        let q = QueryOptions::parse("$filter=name eq 'O''Brien'&$top=2").unwrap();
        assert!(q.matches(json!({"name": "o'brien"}).as_object().unwrap()));
        assert_eq!(q.top, Some(2));
        assert!(QueryOptions::parse("$filter=name ne 'x'").is_err());
    }
}
