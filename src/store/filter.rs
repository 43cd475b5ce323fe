//! Building a `WHERE` clause from optional filters without string-pasting values into SQL.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

/// Conditions and their parameters, numbered as they are added.
#[derive(Default)]
pub(super) struct Conditions<'a> {
    clauses: Vec<String>,
    params: Vec<&'a (dyn ToSql + Sync)>,
}

impl<'a> Conditions<'a> {
    /// Adds `condition`, whose one `$` stands for `value`.
    pub fn push(&mut self, condition: &str, value: &'a (dyn ToSql + Sync)) {
        self.params.push(value);
        let placeholder = format!("${}", self.params.len());
        self.clauses.push(condition.replacen('$', &placeholder, 1));
    }

    /// `WHERE a = $1 AND …`, or nothing when no filter was given.
    pub fn where_clause(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// One page of `SELECT {columns} FROM {table}` under these conditions, in `order`, and the
    /// number of rows matching them.
    pub async fn fetch_page(
        &self,
        client: &Client,
        table: &str,
        columns: &str,
        order: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Row>, i64), tokio_postgres::Error> {
        let where_clause = self.where_clause();
        let count_sql = format!("SELECT count(*) FROM {table} {where_clause}");
        let total: i64 = client.query_one(&count_sql, &self.params).await?.get(0);
        let n = self.params.len();
        let mut params = self.params.clone();
        params.push(&limit);
        params.push(&offset);
        let page_sql = format!(
            "SELECT {columns} FROM {table} {where_clause} ORDER BY {order} LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        Ok((client.query(&page_sql, &params).await?, total))
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
    }
}
