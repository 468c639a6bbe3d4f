// The Dataverse simulator's read side for reconciliation: single rows with their versions,
// EntityDefinitions, failed system jobs (asyncoperations: $filter, $orderby, $select, paging,
// DELETE) and change tracking (Prefer: odata.track-changes, delta links, expiry), each with the
// malformed answers tests can ask for.
//
// Threads: called on the server's I/O threads with org->mu held.
#pragma once

#include <string>

#include "router/ingress/http.h"
#include "tests/simulators/dataverse_org.h"

namespace dvrouter::sim {

// "http://<Host header>" (with the listening port if Host has none): the prefix of absolute
// links (nextLink, deltaLink, @odata.context).
std::string BaseUrl(const Org& org, const HttpRequestView& req);

// GET <set>(<id>): the row, its versionnumber, createdon, modifiedon and @odata.etag.
HttpResponse GetRow(Org* org, const std::string& set, const std::string& id);
// GET EntityDefinitions(LogicalName='<table>').
HttpResponse EntityDefinition(Org* org, const HttpRequestView& req, const std::string& key);
// GET asyncoperations[(<id>)], DELETE asyncoperations(<id>).
HttpResponse AsyncOperations(Org* org, const HttpRequestView& req, const std::string& id);
// GET <set>?... with Prefer: odata.track-changes (a full sync, its pages, or a delta link).
HttpResponse TrackChanges(Org* org, const HttpRequestView& req, const std::string& set);
// Whether the request's Prefer header asks for change tracking.
bool WantsTrackChanges(const HttpRequestView& req);

}  // namespace dvrouter::sim
