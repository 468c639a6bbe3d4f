// Names the router puts into SQL text unquoted or quoted as given: table names, columns,
// ClickHouse databases. One rule, checked by the configuration parser and again by the SQL
// adapters for table names made from events.
//
// Threads: pure functions, any thread.
#pragma once

#include <string_view>

namespace dvrouter {

// Unquoted SQL identifiers: the same in PostgreSQL and SQLite, and at most PostgreSQL's 63 bytes:
// a lowercase letter or '_', then lowercase letters, digits and '_'.
bool ValidSqlIdentifier(std::string_view s);

}  // namespace dvrouter
