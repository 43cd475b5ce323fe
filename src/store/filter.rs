//! Building a `WHERE` clause from optional filters without string-pasting values into SQL.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

/// Conditions and their parameters, numbered as they are added. Filter conditions apply to the
/// page and to its total; a keyset condition (where the previous page ended) to the page only.
#[derive(Default)]
pub(super) struct Conditions<'a> {
    clauses: Vec<String>,
    params: Vec<&'a (dyn ToSql + Sync)>,
    /// Added last, so their parameters come after every filter's.
    page_only: Vec<String>,
    /// How many of `params` belong to filters (the first ones).
    filter_params: usize,
}

impl<'a> Conditions<'a> {
    /// Adds a filter `condition`, whose one `$` stands for `value`.
    pub fn push(&mut self, condition: &str, value: &'a (dyn ToSql + Sync)) {
        debug_assert!(self.page_only.is_empty(), "filters before the keyset condition");
        let numbered = self.number(condition, &[value]);
        self.clauses.push(numbered);
        self.filter_params = self.params.len();
    }

    /// Adds the keyset condition: each `$` in `condition` stands for the next of `values`. It
    /// narrows the page, not the total.
    pub fn push_page_only(&mut self, condition: &str, values: &[&'a (dyn ToSql + Sync)]) {
        let numbered = self.number(condition, values);
        self.page_only.push(numbered);
    }

    /// `condition` with its `$`s numbered, in order, as `values` are added to the parameters.
    fn number(&mut self, condition: &str, values: &[&'a (dyn ToSql + Sync)]) -> String {
        let mut numbered = String::with_capacity(condition.len() + 4 * values.len());
        let mut rest = condition;
        for value in values {
            let Some(at) = rest.find('$') else { break };
            self.params.push(*value);
            numbered.push_str(&rest[..at]);
            numbered.push_str(&format!("${}", self.params.len()));
            rest = &rest[at + 1..];
        }
        numbered.push_str(rest);
        numbered
    }

    /// `WHERE a = $1 AND …`, or nothing when no filter was given.
    pub fn where_clause(&self) -> String {
        where_of(&self.clauses)
    }

    fn filter_params(&self) -> &[&'a (dyn ToSql + Sync)] {
        &self.params[..self.filter_params]
    }

    /// `WHERE` with the filters and the keyset condition, for a page assembled by the caller.
    pub fn page_where_clause(&self) -> String {
        let all: Vec<String> = self.clauses.iter().chain(&self.page_only).cloned().collect();
        where_of(&all)
    }

    /// Every parameter, the keyset condition's included, in their numbering.
    pub fn params(&self) -> &[&'a (dyn ToSql + Sync)] {
        &self.params
    }

    /// One page of `query`'s rows under these conditions, and the number of rows matching them:
    /// counted up to `query.exact_limit`, estimated beyond (counting every row of a large table
    /// takes seconds; the page itself takes milliseconds).
    pub async fn fetch_page(
        &self,
        client: &Client,
        query: &PageQuery<'_>,
    ) -> Result<(Vec<Row>, Total), tokio_postgres::Error> {
        let PageQuery { table, columns, order, key, limit, offset, exact_limit } = *query;
        let total = self.total(client, table, exact_limit).await?;
        let n = self.params.len();
        let mut params = self.params.clone();
        params.push(&limit);
        params.push(&offset);
        let (conditions, page) =
            (self.page_where_clause(), format!("ORDER BY {order} LIMIT ${} OFFSET ${}", n + 1, n + 2));
        let page_sql = match key {
            None => format!("SELECT {columns} FROM {table} {conditions} {page}"),
            Some(key) => format!(
                "SELECT {columns} FROM {table} WHERE {key} IN (SELECT {key} FROM {table} {conditions} {page}) ORDER BY {order}"
            ),
        };
        Ok((client.query(&page_sql, &params).await?, total))
    }
}

/// What one list page selects.
#[derive(Debug, Clone, Copy)]
pub(super) struct PageQuery<'q> {
    pub table: &'q str,
    pub columns: &'q str,
    pub order: &'q str,
    /// With a unique key column: the page's keys are selected first, by a query that needs
    /// only indexed columns, then its rows. PostgreSQL then uses the index matching a filter and
    /// the order (incidents of one severity, newest first) instead of walking the order's index
    /// and filtering, which costs what all rows newer than the page cost (51 ms past 300,000
    /// newer incidents of another severity).
    pub key: Option<&'q str>,
    pub limit: i64,
    pub offset: i64,
    /// Totals are exact up to this many rows.
    pub exact_limit: i64,
}

impl Conditions<'_> {
    /// The number of rows matching the filters: exact when at most `exact_limit`, else the
    /// planner's estimate (from the statistics autovacuum keeps), never below the limit + 1.
    pub async fn total(
        &self,
        client: &Client,
        table: &str,
        exact_limit: i64,
    ) -> Result<Total, tokio_postgres::Error> {
        let filters = self.where_clause();
        let bounded = format!(
            "SELECT count(*) FROM (SELECT 1 FROM {table} {filters} LIMIT {}) AS bounded",
            exact_limit + 1
        );
        let counted: i64 = client.query_one(&bounded, self.filter_params()).await?.try_get(0)?;
        if counted <= exact_limit {
            return Ok(Total { count: counted, exact: true });
        }
        let explain = format!("EXPLAIN (FORMAT JSON) SELECT 1 FROM {table} {filters}");
        let plan: serde_json::Value = client.query_one(&explain, self.filter_params()).await?.try_get(0)?;
        let estimate = plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0) as i64;
        Ok(Total { count: estimate.max(counted), exact: false })
    }
}

/// How many rows match a list's filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Total {
    pub count: i64,
    /// `false`: `count` is the planner's estimate (more rows matched than the exact limit).
    pub exact: bool,
}

fn where_of(clauses: &[String]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_in_order() {
        let (a, b) = ("x".to_owned(), 3i64);
        let mut conditions = Conditions::default();
        assert_eq!(conditions.where_clause(), "");
        conditions.push("a = $", &a);
        conditions.push("b >= $::text", &b);
        assert_eq!(conditions.where_clause(), "WHERE a = $1 AND b >= $2::text");
        conditions.push_page_only("(t, id) < ($, $)", &[&a, &b]);
        assert_eq!(conditions.page_only, ["(t, id) < ($3, $4)"]);
        assert_eq!(conditions.filter_params().len(), 2, "the total ignores the keyset");
    }
}
