/*
 * Generated from openapi.yaml by scripts/generate-api-types.ts (openapi-typescript); do not edit.
 * Regenerate with `npx tsx scripts/generate-api-types.ts`; a test fails while this file is stale.
 */

export interface paths {
    "/send": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Send one email
         * @description Sends one message from the tenant's configured sender mailbox through Microsoft Graph.
         *
         *     The relay answers `202 Accepted` only after Microsoft Graph accepted the message; delivery
         *     to the recipients then happens asynchronously in Exchange Online (bounces go to the
         *     sender mailbox, not to you). With `"dryRun": true` the request is checked and resolved in
         *     the same way, nothing is sent, and the answer is `200 OK` with the same body.
         *
         *     Requirements: at least one recipient in `to`, `cc` or `bcc`; a non-empty `subject`; and
         *     `text` or `html`. Microsoft Graph sends one body: when both are given, `html` is sent.
         *
         *     The body is read as one JSON object no larger than a message needs: at most 64 levels of
         *     nesting, 64 members in any object and 1,000 items in any list, and no key twice in one
         *     object. A body beyond that is refused with `400 validation_failed` before its fields are
         *     looked at; the error's `path` names where. Subject, display names, header values and file
         *     names are text: no control characters (a tab only in `subject` and header values),
         *     U+2028/U+2029, bidirectional formatting (U+202A–U+202E, U+2066–U+2069) or invisible
         *     characters (zero-width and other default-ignorable ones, save those emoji and joining
         *     scripts need).
         */
        post: operations["sendMail"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/tenants": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Show the state of every tenant
         * @description For operators: each configured tenant with its sender, app registration and credential
         *     type and expiry, the outcome of its last send and its last error with their times,
         *     recipients sent to in the last 24 hours, sends in flight and waiting, and any throttling
         *     in force. Needs an API key of an admin caller. Contains no secrets, tokens, file paths or
         *     message contents.
         */
        get: operations["listTenants"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/consent/callback": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Admin-consent redirect target
         * @description Not called by apps. Microsoft Entra ID redirects a tenant administrator's browser here
         *     after they answered the admin-consent prompt of a consent link made by the relay's
         *     onboarding CLI. The page tells the administrator whether the relay's app now has its
         *     permission in their tenant and what to do next. The signed `state` ties the answer to
         *     the consent link; an expired or altered `state` is refused. A `state` is accepted once
         *     (with the Redis store, once across all replicas), and when the link was made for a
         *     tenant ID, only with that `tenant`. Entra ID's `error_description` is shown as escaped
         *     text under a fixed heading, never as markup.
         */
        get: operations["consentCallback"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/healthz": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Liveness probe
         * @description Answers 200 while the process serves requests. Use it as the liveness probe.
         */
        get: operations["getHealth"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/readyz": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Readiness probe
         * @description Answers 200 once the configuration is loaded and the relay is not shutting down, 503
         *     otherwise. Use it as the readiness probe so that a draining instance receives no new sends.
         *     With `store.type: redis` and `store.onUnavailable: reject`, an instance that cannot reach
         *     Redis answers 503 too, so traffic goes to the replicas that can keep the guarantees.
         */
        get: operations["getReadiness"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/metrics": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Prometheus metrics
         * @description Metrics in the Prometheus text exposition format, all prefixed `noreply_relay_`: sends by
         *     tenant and outcome, policy refusals, Graph and token requests, throttling, in-flight sends,
         *     credential expiry and HTTP request durations.
         *
         *     Open by default. With `metrics.tokenFile`/`metrics.tokenEnv` in the config, a scrape must send
         *     that token as `Authorization: Bearer <token>` (the metrics name every tenant); with
         *     `metrics.port`, the metrics are served on that port only and this path answers 404.
         */
        get: operations["getMetrics"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/openapi.yaml": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * This OpenAPI description
         * @description The OpenAPI 3.1 description of the relay, byte for byte the `openapi.yaml` of the relay's repository. Feed it to a client generator or an API tool.
         */
        get: operations["getOpenApiDescription"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/docs": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Interactive documentation
         * @description Swagger UI for this description, served by the relay itself (no third-party assets).
         *     Press **Authorize** to enter your API key, then **Try it out** on an operation to send a
         *     real request to this relay.
         */
        get: operations["getDocs"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        /** @description One message to send. */
        SendRequest: {
            /** @description The tenant key from the service's config; the message is sent from that tenant's configured sender. */
            tenant: string;
            /** @description Primary recipients. */
            to?: components["schemas"]["Recipient"][];
            /** @description Carbon-copy recipients. */
            cc?: components["schemas"]["Recipient"][];
            /** @description Blind carbon-copy recipients. */
            bcc?: components["schemas"]["Recipient"][];
            /** @description Addresses replies should go to. */
            replyTo?: components["schemas"]["Recipient"][];
            /** @description Subject line: text without line breaks, control, bidirectional-formatting or invisible characters (a tab is allowed). */
            subject: string;
            /** @description Plain-text body. Used when html is absent. */
            text?: string;
            /** @description HTML body. Wins over text when both are given. */
            html?: string;
            /** @description File attachments, inline or not. */
            attachments?: components["schemas"]["Attachment"][];
            /** @description Custom internet message headers (at most 5, names starting with X-). */
            headers?: {
                [key: string]: string;
            };
            /**
             * @description Message importance; default normal.
             * @enum {string}
             */
            importance?: "low" | "normal" | "high";
            /** @description Keep a copy in the sender's Sent Items; default from the tenant's config (false). */
            saveToSentItems?: boolean;
            /**
             * Format: email
             * @description Must equal the tenant's configured sender when given (compared after Unicode NFC normalisation, ignoring the case of A–Z only); compatibility characters (such as U+212A KELVIN SIGN for K) are refused.
             * @example someone@example.com
             */
            from?: string;
            /** @description Validate and resolve everything, send nothing; answers 200 with the same body shape. */
            dryRun?: boolean;
        };
        /** @description A recipient: "a@example.com" or {"address": "a@example.com", "name": "A"}. */
        Recipient: string | {
            /**
             * Format: email
             * @description Email address. An internationalized domain is written as A-labels (xn--…) or as NFC U-labels, one script per label; no control, bidirectional-formatting or invisible characters anywhere.
             * @example someone@example.com
             */
            address: string;
            /** @description Display name shown with the address: text without line breaks, tabs, control, bidirectional-formatting or invisible characters. */
            name?: string;
        };
        /** @description A file attachment. */
        Attachment: {
            /** @description File name shown to the recipient: text without line breaks, tabs, control, bidirectional-formatting or invisible characters. */
            filename: string;
            /** @description Media type, e.g. application/pdf or image/png. */
            contentType: string;
            /** @description The file's bytes, base64-encoded. */
            content: string;
            /** @description Content-ID for inline use: the HTML refers to it as <img src="cid:logo">. */
            contentId?: string;
            /** @description Show inline (referenced by contentId from the HTML) instead of as an attachment. Needs contentId. */
            inline?: boolean;
        };
        /** @description The message Microsoft Graph accepted (or, for a dry run, would have been sent). */
        SendAccepted: {
            /**
             * Format: uuid
             * @description The relay's ID of this send. Quote it when you ask the operators about the message.
             */
            id: string;
            /** @description The message's `Message-ID` header, as recipients' mail clients see it. */
            internetMessageId: string;
            /** @description The tenant key the message was sent for. */
            tenant: string;
            /**
             * Format: email
             * @description The mailbox the message was sent from (the tenant's configured sender).
             */
            sender: string;
            /**
             * Format: date-time
             * @description When Microsoft Graph accepted the message (RFC 3339).
             */
            acceptedAt: string;
        };
        /**
         * @description What went wrong, one of a fixed list; each code always comes with the same HTTP status.
         *     | code | status | meaning |
         *     |---|---|---|
         *     | validation_failed | 400 | The body or a header is invalid; `errors` lists each field. |
         *     | unauthorized | 401 | The API key is missing or unknown. |
         *     | tenant_forbidden | 403 | Your API key may not send for this tenant. |
         *     | sender_not_allowed | 403 | `from` is not the tenant's configured sender, or Exchange refused to send as the sender (`ErrorSendAsDenied`). |
         *     | policy_denied | 403 | The tenant's Exchange ApplicationAccessPolicy or RBAC for Applications management scope does not let the app use the sender mailbox. |
         *     | unknown_tenant | 404 | No tenant has this key. |
         *     | idempotency_conflict | 409 | The `Idempotency-Key` was used before with a different body, or its first request was still being processed at this request's deadline. |
         *     | payload_too_large | 413 | The message is over Graph's 4 MB or the relay's limits. |
         *     | recipient_rejected | 422 | Microsoft Graph rejected a recipient address. |
         *     | rate_limited | 429 | A local limit, Graph throttling, or Exchange's daily submission quota for the sender; wait `Retry-After` seconds. |
         *     | permission_missing | 502 | The app has no Mail.Send permission in the tenant (admin consent missing). |
         *     | mailbox_unavailable | 502 | The sender mailbox cannot send: it does not exist, is not enabled for the REST API, is full or blocked from sending, or the tenant has no Exchange Online. |
         *     | credential_rejected | 502 | Microsoft Entra ID rejected the relay's app credential; `aadsts` has its error code. |
         *     | upstream_unavailable | 503 | Entra ID or Graph is unreachable or failing; wait `Retry-After` seconds. |
         *     | outcome_unknown | 504 | Graph may have sent the message but did not confirm it. |
         *     | not_found | 404 | No such path (any path not in this description). |
         *     | method_not_allowed | 405 | The path exists but not with this HTTP method. |
         *     | request_timeout | 408 | The headers or the body did not arrive within the relay's time limits; send the request again, faster. |
         *     | expectation_failed | 417 | The `Expect` header names something other than `100-continue`. |
         *     | internal_error | 500 | An unexpected error in the relay (a bug). |
         * @enum {string}
         */
        ProblemCode: "validation_failed" | "unauthorized" | "tenant_forbidden" | "sender_not_allowed" | "policy_denied" | "permission_missing" | "unknown_tenant" | "idempotency_conflict" | "payload_too_large" | "rate_limited" | "recipient_rejected" | "mailbox_unavailable" | "credential_rejected" | "upstream_unavailable" | "outcome_unknown" | "not_found" | "method_not_allowed" | "request_timeout" | "expectation_failed" | "internal_error";
        /** @description An RFC 9457 problem. Program against `code`; `detail` is for humans. */
        Problem: {
            /**
             * Format: uri
             * @description URI naming the problem type, `https://noreply-relay.dev/problems/<code>`.
             */
            type: string;
            /** @description Short summary of the problem type; the same for every occurrence of a code. */
            title: string;
            /** @description The HTTP status code, repeated. */
            status: number;
            /** @description What went wrong with this request, for humans. */
            detail: string;
            code: components["schemas"]["ProblemCode"];
            /** @description Whether sending the same request again, after `Retry-After` when given, may succeed. */
            retryable: boolean;
            /** @description The relay's ID of this request, the same as the `X-Request-Id` header (for a replay, the first request's); quote it when you ask the operators. */
            requestId: string;
            /** @description For `validation_failed`, the invalid fields, at most 20 (the first ones found); `errorsOmitted` counts the rest. Each `path` is at most 200 characters and each `message` at most 300 (longer ones end with `…`). */
            errors?: components["schemas"]["FieldError"][];
            /** @description For `validation_failed` with more than 20 invalid fields, how many are not listed in `errors`. Absent when `errors` lists them all. */
            errorsOmitted?: number;
            /** @description For `credential_rejected`, Microsoft Entra ID's AADSTS error number (for example `7000222`, expired secret); for `upstream_unavailable` caused by an Entra ID outage, its transient code (for example `90033`). */
            aadsts?: string;
            /** @description For `rate_limited` and `upstream_unavailable`, the same value as the `Retry-After` header. */
            retryAfterSeconds?: number;
            /** @description Microsoft Graph's `error.code`, when Graph refused the message. */
            graphCode?: string;
            /** @description Microsoft Graph's `request-id`, for a support case with Microsoft. */
            graphRequestId?: string;
        } & (unknown & unknown);
        /** @description One invalid field of a `validation_failed` problem. */
        FieldError: {
            /** @description The field in the request body, for example `subject`, `to[1].address` or `headers["X-Order-Id"]`; `(body)` for the body as a whole; `Idempotency-Key` for that header. At most 200 characters (a longer one is cut and ends with `…`). */
            path: string;
            /** @description What is wrong with it. */
            message: string;
        };
        /** @description Every configured tenant, in configuration order. */
        TenantsResponse: {
            tenants: components["schemas"]["TenantStatus"][];
        };
        /**
         * @description Configuration and live state of one tenant. Activity (last outcome and problem) is kept in
         *     memory per relay instance and starts empty after a restart; with several instances, each
         *     answers for itself. Never contains a secret, a file path or an environment variable name.
         */
        TenantStatus: {
            /** @description The tenant key callers use. */
            tenant: string;
            /** @description Human name of the customer, when configured. */
            displayName?: string;
            /** @description The Entra tenant (GUID or verified domain). */
            tenantId: string;
            /**
             * Format: email
             * @description The only mailbox this tenant sends from.
             */
            sender: string;
            /** @description The app registration used for this tenant. */
            app: {
                /**
                 * Format: uuid
                 * @description Application (client) ID.
                 */
                clientId: string;
                /** @description True when the customer registered the app in its own tenant; false for the relay's shared multi-tenant app. */
                own: boolean;
                /**
                 * @description How the app proves its identity to Entra ID.
                 * @enum {string}
                 */
                credentialType: "secret" | "certificate" | "workloadIdentity";
                /**
                 * Format: date-time
                 * @description When the credential expires, when configured.
                 */
                credentialExpiresAt?: string;
            };
            /** @description The tenant's configured limits. */
            limits: {
                /** @description Sends in flight to Graph at once for the sender mailbox. */
                maxConcurrency: number;
                /** @description Recipients (to + cc + bcc) per rolling 24 hours. */
                recipientsPerDay: number;
                /** @description Sends that may wait for a free slot before `rate_limited`. */
                maxQueue: number;
            };
            /** @description Outcome of the last send for this tenant (replays not counted); absent before the first. */
            lastOutcome?: ("sent" | "dry_run") | components["schemas"]["ProblemCode"];
            /**
             * Format: date-time
             * @description When `lastOutcome` happened.
             */
            lastOutcomeAt?: string;
            /** @description The last refusal that was about this tenant (its credential, consent, access policy, mailbox, Graph or Entra availability, throttling); it stays after later successes, so the cause of an earlier failure remains visible. A caller's own mistake (validation_failed, sender_not_allowed, payload_too_large, idempotency_conflict, recipient_rejected, …) shows in lastOutcome only and never replaces it. */
            lastProblem?: {
                code: components["schemas"]["ProblemCode"];
                /** Format: date-time */
                at: string;
                /** @description Entra ID's AADSTS number, for `credential_rejected`. */
                aadsts?: string;
                /** @description Microsoft Graph's `error.code`, when Graph refused. */
                graphCode?: string;
            };
            /** @description Recipients counted for the sender mailbox in the rolling 24-hour window (compare with `limits.recipientsPerDay`). */
            recipientsUsed: number;
            /** @description Sends to Graph in progress for the sender mailbox. */
            inFlight: number;
            /** @description Sends waiting for a free slot for the sender mailbox. */
            waiting: number;
            /**
             * Format: date-time
             * @description While Microsoft Graph throttles the sender mailbox, the time until which sends hold back; absent otherwise.
             */
            throttledUntil?: string;
            /**
             * Format: date-time
             * @description After Entra ID rejected the credential, the time until which sends are refused with `credential_rejected` without asking Entra again; absent otherwise.
             */
            credentialRejectedUntil?: string;
        };
        /** @description Result of a health probe. Probes need only the status code; the body is for humans. */
        ProbeStatus: {
            /**
             * @description `ok` (liveness), `ready`, or why the relay is not ready: `shutting_down`, or
             *     `store_unavailable` (the shared store cannot be reached and `store.onUnavailable` is `reject`).
             */
            status: string;
            /** @description On `/readyz`, the store of the delivery guarantees and whether this instance reaches it. */
            store?: {
                /** @enum {string} */
                type: "memory" | "redis";
                /** @enum {string} */
                status: "ok" | "unavailable";
            };
        };
    };
    responses: {
        /** @description The request's `If-None-Match` names the current `ETag`; the file is unchanged and has no body here. */
        NotModified: {
            headers: {
                "X-Request-Id": components["headers"]["RequestId"];
                ETag: components["headers"]["ETag"];
                [name: string]: unknown;
            };
            content?: never;
        };
        /** @description The body or a header is invalid. `errors` lists the invalid fields (the first 20; `errorsOmitted` counts the rest); fix them and send again. */
        ValidationFailed: {
            headers: {
                "X-Request-Id": components["headers"]["RequestId"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"] & {
                    /** @constant */
                    code?: "validation_failed";
                    /** @constant */
                    status?: 400;
                };
            };
        };
        /** @description The `Authorization` header is missing, or the API key is unknown. */
        Unauthorized: {
            headers: {
                "X-Request-Id": components["headers"]["RequestId"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"] & {
                    /** @constant */
                    code?: "unauthorized";
                    /** @constant */
                    status?: 401;
                };
            };
        };
        /** @description The send is not allowed. See `code` for which rule refused it. */
        SendForbidden: {
            headers: {
                "X-Request-Id": components["headers"]["RequestId"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"] & {
                    /** @enum {unknown} */
                    code?: "tenant_forbidden" | "sender_not_allowed" | "policy_denied";
                    /** @constant */
                    status?: 403;
                };
            };
        };
        /** @description No tenant has this tenant key. Check the spelling, or ask the operators to add the tenant. */
        UnknownTenant: {
            headers: {
                "X-Request-Id": components["headers"]["RequestId"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"] & {
                    /** @constant */
                    code?: "unknown_tenant";
                    /** @constant */
                    status?: 404;
                };
            };
        };
        /**
         * @description This request's `Idempotency-Key` cannot be used for it, and nothing was sent. Two cases,
         *     told apart by `detail`:
         *     - **Different body.** The key was used with a different body, within the last 24 hours or
         *       by a request still running. Use a new key for a new message.
         *     - **Still being processed.** A request with the same key and body was still being
         *       processed when this request's deadline came. `retryable` is `false` for every
         *       `idempotency_conflict`, but here the same request sent again once the first has
         *       finished gets the first request's answer (or is handled as new, if that answer is not
         *       remembered).
         */
        IdempotencyConflict: {
            headers: {
                "X-Request-Id": components["headers"]["RequestId"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"] & {
                    /** @constant */
                    code?: "idempotency_conflict";
                    /** @constant */
                    status?: 409;
                };
            };
        };
        /** @description The message is larger than Microsoft Graph accepts (4 MB including base64-encoded attachments) or than the relay's configured limit. */
        PayloadTooLarge: {
            headers: {
                "X-Request-Id": components["headers"]["RequestId"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"] & {
                    /** @constant */
                    code?: "payload_too_large";
                    /** @constant */
                    status?: 413;
                };
            };
        };
        /** @description Microsoft Graph rejected a recipient address (for example an invalid domain). Nothing was sent. */
        RecipientRejected: {
            headers: {
                "X-Request-Id": components["headers"]["RequestId"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"] & {
                    /** @constant */
                    code?: "recipient_rejected";
                    /** @constant */
                    status?: 422;
                };
            };
        };
        /**
         * @description Too many sends: a local limit of the relay (recipients per day, sends waiting for the
         *     mailbox) or Microsoft Graph throttling that lasts longer than the request may wait.
         *     Nothing was sent. Retry after `Retry-After` seconds.
         */
        RateLimited: {
            headers: {
                "X-Request-Id": components["headers"]["RequestId"];
                "Retry-After": components["headers"]["RetryAfter"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"] & {
                    /** @constant */
                    code?: "rate_limited";
                    /** @constant */
                    status?: 429;
                };
            };
        };
        /** @description An unexpected error in the relay (a bug). Quote `requestId` when you report it to the operators. */
        InternalError: {
            headers: {
                "X-Request-Id": components["headers"]["RequestId"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"] & {
                    /** @constant */
                    code?: "internal_error";
                    /** @constant */
                    status?: 500;
                };
            };
        };
        /**
         * @description An unexpected error in the relay (a bug). Quote `requestId` when you report it to the
         *     operators. The message may have been sent before the error, so with an `Idempotency-Key`
         *     this answer is remembered: a retry with the same key and body gets it again (with
         *     `Idempotent-Replayed: true` and the first request's `X-Request-Id`) and sends nothing.
         */
        SendInternalError: {
            headers: {
                "X-Request-Id": components["headers"]["RequestId"];
                "Idempotent-Replayed": components["headers"]["IdempotentReplayed"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"] & {
                    /** @constant */
                    code?: "internal_error";
                    /** @constant */
                    status?: 500;
                };
            };
        };
        /**
         * @description Microsoft Entra ID or Graph refused the relay because of how the tenant or the relay is set
         *     up. Retrying will not help; the operators or the tenant's administrator must act (see `detail`).
         */
        UpstreamRefused: {
            headers: {
                "X-Request-Id": components["headers"]["RequestId"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"] & {
                    /** @enum {unknown} */
                    code?: "permission_missing" | "mailbox_unavailable" | "credential_rejected";
                    /** @constant */
                    status?: 502;
                };
            };
        };
        /** @description Microsoft Entra ID or Graph could not be reached or failed. Nothing was sent. Retry after `Retry-After` seconds. */
        UpstreamUnavailable: {
            headers: {
                "X-Request-Id": components["headers"]["RequestId"];
                "Retry-After": components["headers"]["RetryAfter"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"] & {
                    /** @constant */
                    code?: "upstream_unavailable";
                    /** @constant */
                    status?: 503;
                };
            };
        };
        /**
         * @description Microsoft Graph may have accepted the message but did not confirm it (a timeout, a broken
         *     connection, or a 500, 502 or 504 from Graph after the message was sent). The relay does not
         *     retry, to avoid sending twice.
         *     With an `Idempotency-Key` this answer is remembered: a retry with the same key and body
         *     gets it again (with `Idempotent-Replayed: true` and the first request's `X-Request-Id`)
         *     and sends nothing. A retry with a new key (or none) may deliver the message twice; do
         *     that only where a duplicate is acceptable.
         */
        OutcomeUnknown: {
            headers: {
                "X-Request-Id": components["headers"]["RequestId"];
                "Idempotent-Replayed": components["headers"]["IdempotentReplayed"];
                [name: string]: unknown;
            };
            content: {
                "application/problem+json": components["schemas"]["Problem"] & {
                    /** @constant */
                    code?: "outcome_unknown";
                    /** @constant */
                    status?: 504;
                };
            };
        };
    };
    parameters: {
        /**
         * @description A key you choose, unique per message (for example a UUID or `invoice-2024-0042-mail`):
         *     1 to 255 printable ASCII characters (space to `~`), not only spaces; spaces at either end
         *     are not part of the key (HTTP drops them). Any other value, and the header sent more
         *     than once (even twice with one value), is refused with
         *     `400 validation_failed` (`errors[].path` is `Idempotency-Key`) and nothing is sent. Keys belong to the API key that sends them, so other apps cannot collide with yours.
         *     The key is looked at right after the API key, before the body is validated.
         *
         *     - **Replay.** The same key with the same body (the same JSON: key order and whitespace do
         *       not matter, any changed or added value does) within 24 hours of the first answer gets
         *       that answer again: its status, body and `X-Request-Id` (so `requestId` names the
         *       request that did the work), plus `Idempotent-Replayed: true`. Nothing is sent, and
         *       nothing is validated or counted against a limit again.
         *     - **Remembered** are only the answers after which the message may exist: `202` (sent),
         *       `504 outcome_unknown`, and `500 internal_error` (an unexpected error, possibly after
         *       Graph was called). A second message is worse than a repeated error.
         *     - **Not remembered** are the answers after which provably nothing was sent: dry runs
         *       (`200`), `400 validation_failed`, the refusals before Graph (`401`, `403`, `404`,
         *       `413`), every `429`, `503`, and the refusals of Entra ID or Graph (`403 policy_denied`,
         *       `422`, `502`). The key stays free, so a retry with the same key after you (or an
         *       administrator) fixed the cause is handled as a new request and can succeed.
         *     - **Still sending.** A replay that arrives while the first request with the key is still
         *       being processed waits for that request's answer and gets it (or, when that answer is
         *       not remembered, is handled as a new request itself). If the first request is still
         *       running when the replay reaches its own request deadline (30 seconds unless the
         *       operators changed it), the replay gets `409 idempotency_conflict` and nothing is sent;
         *       send it again later to get the first request's answer.
         *     - **Conflict.** The same key with a different body gets `409 idempotency_conflict` at
         *       once while the key is remembered or its first request is still running.
         *
         *     The 24 hours count from the first answer and are the default (the operators may change
         *     them). With the default in-memory store, keys are kept by the relay instance that
         *     answered, in bounded memory; with the shared (Redis) store, every replica sees them.
         */
        IdempotencyKey: string;
    };
    requestBodies: never;
    headers: {
        /**
         * @description Whole seconds to wait before retrying the same request (at least 1).
         * @example 30
         */
        RetryAfter: number;
        /**
         * @description The relay's ID of this request, sent with every answer, errors included; a problem's
         *     `requestId` has the same value. It also appears in the relay's log line for the request:
         *     quote it when you ask the operators about a request. A replay (`Idempotent-Replayed:
         *     true`) carries the ID of the first request, whose answer it repeats; the replay's own log
         *     line names that ID as `replayOf`.
         * @example 0b8f2d6e-3c1a-4e59-8f7d-2a6b9c4e1f03
         */
        RequestId: string;
        /**
         * @description `true` when this answer is a replay: the remembered answer to an earlier request with the
         *     same `Idempotency-Key` and body, repeated without sending anything. Status, body and
         *     `X-Request-Id` are those of that first request. Absent on every other answer.
         * @example true
         */
        IdempotentReplayed: "true";
        /**
         * @description Version of the file; send it back as `If-None-Match` to get `304 Not Modified` while it is unchanged.
         * @example "q3L0nE6Yl2m4pZ0e6Y0s8b1c2d3e4f5"
         */
        ETag: string;
    };
    pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
    sendMail: {
        parameters: {
            query?: never;
            header?: {
                /**
                 * @description A key you choose, unique per message (for example a UUID or `invoice-2024-0042-mail`):
                 *     1 to 255 printable ASCII characters (space to `~`), not only spaces; spaces at either end
                 *     are not part of the key (HTTP drops them). Any other value, and the header sent more
                 *     than once (even twice with one value), is refused with
                 *     `400 validation_failed` (`errors[].path` is `Idempotency-Key`) and nothing is sent. Keys belong to the API key that sends them, so other apps cannot collide with yours.
                 *     The key is looked at right after the API key, before the body is validated.
                 *
                 *     - **Replay.** The same key with the same body (the same JSON: key order and whitespace do
                 *       not matter, any changed or added value does) within 24 hours of the first answer gets
                 *       that answer again: its status, body and `X-Request-Id` (so `requestId` names the
                 *       request that did the work), plus `Idempotent-Replayed: true`. Nothing is sent, and
                 *       nothing is validated or counted against a limit again.
                 *     - **Remembered** are only the answers after which the message may exist: `202` (sent),
                 *       `504 outcome_unknown`, and `500 internal_error` (an unexpected error, possibly after
                 *       Graph was called). A second message is worse than a repeated error.
                 *     - **Not remembered** are the answers after which provably nothing was sent: dry runs
                 *       (`200`), `400 validation_failed`, the refusals before Graph (`401`, `403`, `404`,
                 *       `413`), every `429`, `503`, and the refusals of Entra ID or Graph (`403 policy_denied`,
                 *       `422`, `502`). The key stays free, so a retry with the same key after you (or an
                 *       administrator) fixed the cause is handled as a new request and can succeed.
                 *     - **Still sending.** A replay that arrives while the first request with the key is still
                 *       being processed waits for that request's answer and gets it (or, when that answer is
                 *       not remembered, is handled as a new request itself). If the first request is still
                 *       running when the replay reaches its own request deadline (30 seconds unless the
                 *       operators changed it), the replay gets `409 idempotency_conflict` and nothing is sent;
                 *       send it again later to get the first request's answer.
                 *     - **Conflict.** The same key with a different body gets `409 idempotency_conflict` at
                 *       once while the key is remembered or its first request is still running.
                 *
                 *     The 24 hours count from the first answer and are the default (the operators may change
                 *     them). With the default in-memory store, keys are kept by the relay instance that
                 *     answered, in bounded memory; with the shared (Redis) store, every replica sees them.
                 */
                "Idempotency-Key"?: components["parameters"]["IdempotencyKey"];
            };
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["SendRequest"];
            };
        };
        responses: {
            /** @description Dry run (`"dryRun": true`) passed every check. Nothing was sent; the body has the same shape as for a real send. */
            200: {
                headers: {
                    "X-Request-Id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SendAccepted"];
                };
            };
            /**
             * @description Microsoft Graph accepted the message. A replay with the same `Idempotency-Key` and body
             *     within 24 hours returns this same answer again, with `Idempotent-Replayed: true` and
             *     the first request's `X-Request-Id`, and sends nothing.
             */
            202: {
                headers: {
                    "X-Request-Id": components["headers"]["RequestId"];
                    "Idempotent-Replayed": components["headers"]["IdempotentReplayed"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SendAccepted"];
                };
            };
            400: components["responses"]["ValidationFailed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["SendForbidden"];
            404: components["responses"]["UnknownTenant"];
            409: components["responses"]["IdempotencyConflict"];
            413: components["responses"]["PayloadTooLarge"];
            422: components["responses"]["RecipientRejected"];
            429: components["responses"]["RateLimited"];
            500: components["responses"]["SendInternalError"];
            502: components["responses"]["UpstreamRefused"];
            503: components["responses"]["UpstreamUnavailable"];
            504: components["responses"]["OutcomeUnknown"];
        };
    };
    listTenants: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description State of every tenant, by tenant key. */
            200: {
                headers: {
                    "X-Request-Id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TenantsResponse"];
                };
            };
            401: components["responses"]["Unauthorized"];
            /** @description The API key is valid but not an admin key. */
            403: {
                headers: {
                    "X-Request-Id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    "application/problem+json": components["schemas"]["Problem"] & {
                        /** @constant */
                        code?: "tenant_forbidden";
                        /** @constant */
                        status?: 403;
                    };
                };
            };
            500: components["responses"]["InternalError"];
        };
    };
    consentCallback: {
        parameters: {
            query?: {
                /**
                 * @description `True` when the administrator granted consent.
                 * @example True
                 */
                admin_consent?: string;
                /**
                 * @description The Entra tenant ID of the administrator's tenant.
                 * @example 72f988bf-86f1-41af-91ab-2d7cd011db47
                 */
                tenant?: string;
                /** @description The signed state the relay put into the consent link. */
                state?: string;
                /**
                 * @description Entra ID's error code when consent was not granted, for example `access_denied`.
                 * @example access_denied
                 */
                error?: string;
                /** @description Entra ID's explanation of `error`. */
                error_description?: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /**
             * @description The callback came from a valid consent link. The page says whether consent was granted
             *     (with the tenant and app IDs), declined by the administrator, or refused by Entra ID
             *     (with its error), and what to do next.
             */
            200: {
                headers: {
                    "X-Request-Id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    /** @example <!doctype html><title>Consent granted</title><p>noreply-relay can now request tokens for your organization.</p> */
                    "text/html": string;
                };
            };
            /** @description The `state` is missing, altered, expired or already used, names another tenant than the link was made for, or Entra ID's redirect did not say whether consent was granted; the page explains what to do. */
            400: {
                headers: {
                    "X-Request-Id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    /** @example <!doctype html><title>This consent link is not valid</title><p>The link you followed has expired.</p> */
                    "text/html": string;
                };
            };
            /** @description The relay could not check whether the link was used before (its shared store is unreachable). Nothing was recorded and the link still works; the page asks to reload in a minute. */
            503: {
                headers: {
                    "X-Request-Id": components["headers"]["RequestId"];
                    "Retry-After": components["headers"]["RetryAfter"];
                    [name: string]: unknown;
                };
                content: {
                    /** @example <!doctype html><title>Please try again in a minute</title><p>Nothing was recorded. Reload this page in a minute.</p> */
                    "text/html": string;
                };
            };
        };
    };
    getHealth: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The process is alive. */
            200: {
                headers: {
                    "X-Request-Id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "status": "ok"
                     *     }
                     */
                    "application/json": components["schemas"]["ProbeStatus"];
                };
            };
        };
    };
    getReadiness: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Ready to accept sends. */
            200: {
                headers: {
                    "X-Request-Id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "status": "ready",
                     *       "store": {
                     *         "type": "redis",
                     *         "status": "ok"
                     *       }
                     *     }
                     */
                    "application/json": components["schemas"]["ProbeStatus"];
                };
            };
            /** @description Not ready (starting, shutting down, or the shared store is unreachable). */
            503: {
                headers: {
                    "X-Request-Id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "status": "shutting_down"
                     *     }
                     */
                    "application/json": components["schemas"]["ProbeStatus"];
                };
            };
        };
    };
    getMetrics: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The current metrics. */
            200: {
                headers: {
                    "X-Request-Id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example # HELP noreply_relay_send_total Sends by tenant and outcome.
                     *     # TYPE noreply_relay_send_total counter
                     *     noreply_relay_send_total{tenant="contoso",outcome="sent"} 1240
                     */
                    "text/plain": string;
                };
            };
            401: components["responses"]["Unauthorized"];
            /** @description The metrics are served on their own port (`metrics.port`), not here. */
            404: {
                headers: {
                    "X-Request-Id": components["headers"]["RequestId"];
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "type": "https://noreply-relay.dev/problems/not_found",
                     *       "title": "No such resource",
                     *       "status": 404,
                     *       "detail": "no resource at /metrics",
                     *       "code": "not_found",
                     *       "retryable": false,
                     *       "requestId": "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e"
                     *     }
                     */
                    "application/problem+json": components["schemas"]["Problem"] & {
                        /** @constant */
                        code?: "not_found";
                        /** @constant */
                        status?: 404;
                    };
                };
            };
        };
    };
    getOpenApiDescription: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The OpenAPI description in YAML. */
            200: {
                headers: {
                    "X-Request-Id": components["headers"]["RequestId"];
                    ETag: components["headers"]["ETag"];
                    [name: string]: unknown;
                };
                content: {
                    "application/yaml": string;
                };
            };
            304: components["responses"]["NotModified"];
        };
    };
    getDocs: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The documentation page. */
            200: {
                headers: {
                    "X-Request-Id": components["headers"]["RequestId"];
                    ETag: components["headers"]["ETag"];
                    [name: string]: unknown;
                };
                content: {
                    "text/html": string;
                };
            };
            304: components["responses"]["NotModified"];
        };
    };
}
