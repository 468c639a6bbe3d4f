// RouteTable: which adapters an event goes to (the `routes` config), and the loop guard.
//
// A route matches on table, message and stage (empty lists match anything) and, optionally, on
// the changed columns (at least one of them is among Target's attributes). The loop guard skips
// events initiated by the configured user ids (the router's own application user, whose
// write-back to Dataverse raises Update events of its own) and Updates whose changed columns all
// lie in the ignore list. The table's primary id column (`<table>id`), present in every Target,
// never counts as changed. Threads: immutable after construction; Match needs a per-thread
// AttributeExtractor when columns matter.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "router/config/config.h"
#include "router/decode/attributes.h"
#include "router/decode/event.h"

namespace dvrouter {

enum class RouteVerdict { kRouted, kUnrouted, kLoopUser, kIgnoredColumns };

class RouteTable {
 public:
  // adapter_names gives each adapter's index (the bit in the mask Match returns).
  RouteTable(const std::vector<RouteConfig>& routes, const LoopGuardConfig& guard,
             const std::vector<std::string>& adapter_names);

  // Whether Match needs the Target's columns (then it parses the body).
  bool needs_columns() const { return needs_columns_; }

  // Sets *mask to the adapters the event goes to (bit i: adapter i). `body` may be parsed with
  // `extractor` (which needs body capacity >= size + 64 or copies).
  RouteVerdict Match(const EventHeader& header, std::string_view body,
                     AttributeExtractor* extractor, uint64_t* mask) const;

 private:
  struct Route {
    std::vector<std::string> tables, messages, changed_columns;
    std::vector<int32_t> stages;
    uint64_t mask = 0;
  };
  std::vector<Route> routes_;
  std::vector<std::string> loop_users_;
  std::vector<std::string> ignore_columns_;
  bool needs_columns_ = false;
};

}  // namespace dvrouter
