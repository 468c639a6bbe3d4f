// Registration: `dvrouter register` creates or updates, idempotently, the webhook service
// endpoint (serviceendpoint, contract 8) and its steps (sdkmessageprocessingstep, with images)
// in Dataverse through the Web API, from the `registration` config section (docs/dataverse.md,
// "Authentication of the webhook" and "Registering dvrouter").
//
// Each object is looked up by name first (the endpoint by `endpoint_name`; a step by its name
// "<endpoint_name>: <table> <Message> <stage>"; an image by step and name): found, it is PATCHed to
// the configured state; missing, it is POSTed. Running it twice changes nothing the second time.
// The endpoint's authentication follows ingress.auth: webhook_key -> WebhookKey (4), http_header ->
// HttpHeader (5), http_query_string -> HttpQueryString (6), with the ingress secret.
//
// With dry_run no request is sent: the requests are printed, with ids not yet known shown as
// {placeholders} and the secret as ***.
#pragma once

#include <ostream>

#include "adapters/dataverse/dataverse_config.h"
#include "adapters/dataverse/webapi.h"
#include "router/common/status.h"
#include "router/config/config.h"

namespace dvrouter {

// Reports each step on `out`. `web` may be null when dry_run.
Status RegisterWebhook(const Config& config, WebApiClient* web, bool dry_run, std::ostream& out);

}  // namespace dvrouter
