# shellcheck shell=bash
# The variables are read by the scripts that source this file.
# shellcheck disable=SC2034
# Names, sizes and settings shared by infra/provision.sh and deploy.sh: the
# one place that says which function runs as whom, reads which secret and
# publishes where. Sourced once PROJECT_ID and REGION are known. Every
# ${VAR:-default} can be overridden from the environment or the --env-file.

NAME_PREFIX=${NAME_PREFIX:-vs}
RUNTIME=${RUNTIME:-python312}

# --- Pub/Sub -----------------------------------------------------------------
TOPICS=(verification-events customer-emails order-actions)
DEAD_LETTER_MAX_DELIVERY_ATTEMPTS=${DEAD_LETTER_MAX_DELIVERY_ATTEMPTS:-10}
SUBSCRIBER_MIN_RETRY_DELAY=${SUBSCRIBER_MIN_RETRY_DELAY:-10s}
SUBSCRIBER_MAX_RETRY_DELAY=${SUBSCRIBER_MAX_RETRY_DELAY:-600s}
# Dead-lettered messages wait here for an operator; 31 days is Pub/Sub's limit.
DEAD_LETTER_RETENTION=${DEAD_LETTER_RETENTION:-7d}

dead_letter_topic() { printf '%s-dead-letter' "$1"; }
dead_letter_subscription() { printf '%s-dead-letter-sub' "$1"; }

# --- Cloud Tasks ---------------------------------------------------------------
TASKS_QUEUE=${TASKS_QUEUE:-verification-timers}
TASKS_MAX_DISPATCHES_PER_SECOND=${TASKS_MAX_DISPATCHES_PER_SECOND:-10}
TASKS_MAX_ATTEMPTS=${TASKS_MAX_ATTEMPTS:-5}
TASKS_MAX_RETRY_DURATION=${TASKS_MAX_RETRY_DURATION:-3600s}
TASKS_MIN_BACKOFF=${TASKS_MIN_BACKOFF:-10s}
TASKS_MAX_BACKOFF=${TASKS_MAX_BACKOFF:-300s}
TASKS_MAX_DOUBLINGS=${TASKS_MAX_DOUBLINGS:-5}
# TASKS_MAX_CONCURRENT_DISPATCHES defaults to timer-expiry's max instances,
# set below once the function table is defined.

# --- Cloud SQL -----------------------------------------------------------------
SQL_INSTANCE=${SQL_INSTANCE:-verification-db}
SQL_DATABASE_VERSION=${SQL_DATABASE_VERSION:-POSTGRES_16}
SQL_EDITION=${SQL_EDITION:-ENTERPRISE}
SQL_TIER=${SQL_TIER:-db-custom-1-3840}
# Set explicitly on the instance so the pool arithmetic below is checked
# against a known number rather than the tier's default.
DB_MAX_CONNECTIONS=${DB_MAX_CONNECTIONS:-100}
# Kept free for superuser-reserved slots, Cloud SQL's own agent, migrations,
# an operator's psql, and instances of the previous revision still draining
# during a deploy.
DB_CONNECTION_HEADROOM=${DB_CONNECTION_HEADROOM:-20}
DB_NAME=${DB_NAME:-verification}
DB_USER=${DB_USER:-verification_app}
# IAM database authentication: each function logs in as its own service
# account, which is a member of only its own role (shared/db/grants.py). With
# false, every function shares DB_USER and its password (db-password), and so
# the union of the roles.
DB_IAM_AUTH=${DB_IAM_AUTH:-true}
# The interpreter deploy.sh runs the schema step (python -m shared.db.upgrade)
# with; it needs requirements.txt installed (scripts/venv.sh makes .venv).
DEPLOY_PYTHON=${DEPLOY_PYTHON:-python3}
INSTANCE_CONNECTION_NAME="$PROJECT_ID:$REGION:$SQL_INSTANCE"

# --- BigQuery export -----------------------------------------------------------
BQ_DATASET=${BQ_DATASET:-verification_analytics}
BQ_TABLE=${BQ_TABLE:-verification_events}
BQ_LOCATION=${BQ_LOCATION:-$REGION}
BQ_SUBSCRIPTION=${BQ_SUBSCRIPTION:-verification-events-bigquery}
BQ_MAX_DELIVERY_ATTEMPTS=${BQ_MAX_DELIVERY_ATTEMPTS:-5}
# Days a day's partition of raw events is kept in BigQuery (the service's RETENTION).
BQ_PARTITION_EXPIRATION_DAYS=${BQ_PARTITION_EXPIRATION_DAYS:-90}

# --- Cloud Scheduler -----------------------------------------------------------
SWEEP_JOB=${SWEEP_JOB:-verification-sweep}
SWEEP_SCHEDULE=${SWEEP_SCHEDULE:-* * * * *}
# Longer than sweep's timeout, so Scheduler never gives up on a running sweep.
SWEEP_ATTEMPT_DEADLINE=${SWEEP_ATTEMPT_DEADLINE:-180s}

# --- Application settings (plain environment variables) -----------------------
VERIFICATION_WINDOW=${VERIFICATION_WINDOW:-72h}
REMINDER_OFFSETS=${REMINDER_OFFSETS:-24h}
STORE_TIMEZONE=${STORE_TIMEZONE:-UTC}
# The ID provider new sessions' links are created with (shared/providers/registry.py); the
# function table reads only its chosen provider's secrets.
ID_PROVIDER=${ID_PROVIDER:-veriff}
VERIFF_BASE_URL=${VERIFF_BASE_URL:-https://stationapi.veriff.com}
EMAIL_BACKEND=${EMAIL_BACKEND:-sendgrid}
EMAIL_FROM=${EMAIL_FROM:-}
REFUND_BACKEND=${REFUND_BACKEND:-manual}
REFUND_API_URL=${REFUND_API_URL:-}
LIGHTSPEED_ENABLED=${LIGHTSPEED_ENABLED:-true}
# The stores told of each outcome (shared/stores; docs/DEPLOY.md): each one's switch
# (<STORE>_ENABLED, default false) and settings, with their defaults, come from the
# function table (shared/functions_table.py STORE_SETTINGS), so no store is named
# here. A store on (true) makes its secrets required: the intake reads its webhook
# secret, the order-actions subscriber (request-refund) its API credentials. Its
# settings go to every function that moves a session: each decides which store
# actions a transition writes, without the credentials. STORE_SWITCHES lists the
# switches; STORE_REQUIRED the settings deploy.sh requires while their store is on.
STORE_TABLE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && "$DEPLOY_PYTHON" -m shared.functions_table stores) ||
    die "could not read the stores' settings: $DEPLOY_PYTHON -m shared.functions_table stores failed"
eval "$STORE_TABLE"
# after_response: the intake answers, then relays on a thread (its CPU stays
# allocated: instance-based billing); in_request: it relays before answering.
INTAKE_RELAY=${INTAKE_RELAY:-after_response}
# Verify once: true sends a returning customer's order (opened verified at once)
# one short "no action needed" email; false (the default) sends it none.
RETURNING_CUSTOMER_EMAIL=${RETURNING_CUSTOMER_EMAIL:-false}
# Who may open the operator console through Identity-Aware Proxy: IAM members,
# comma-separated (group:ops@store.example,user:alice@store.example). deploy.sh
# makes IAP's list equal this one (members not on it are removed) and refuses
# allUsers, allAuthenticatedUsers and public email domains (domain:gmail.com)
# unless CONSOLE_ALLOW_PUBLIC=true (or --allow-public-console).
CONSOLE_ACCESS=${CONSOLE_ACCESS:-}
CONSOLE_ALLOW_PUBLIC=${CONSOLE_ALLOW_PUBLIC:-false}
# The console's own lists, checked after IAP (emails, domain:store.example):
# operators act, viewers read, verifiers (optional; else every operator) may
# verify an order's age by hand. Operators or viewers are required.
CONSOLE_OPERATORS=${CONSOLE_OPERATORS:-}
CONSOLE_VIEWERS=${CONSOLE_VIEWERS:-}
CONSOLE_VERIFIERS=${CONSOLE_VERIFIERS:-}
# The audience IAP puts in its assertions; deploy.sh derives the Cloud Run one
# (/projects/NUMBER/locations/REGION/services/operator-console) when unset.
CONSOLE_IAP_AUDIENCE=${CONSOLE_IAP_AUDIENCE:-}

# --- Monitoring ----------------------------------------------------------------
# Where the alert policies notify: email addresses, comma-separated
# (oncall@store.example,ops@store.example). Unset: provision.sh creates the
# log-based metrics, policies and dashboard without any notification channel,
# and says so. The files themselves are infra/monitoring/ (docs/RUNBOOK.md).
ALERT_EMAILS=${ALERT_EMAILS:-}

# --- Service accounts ----------------------------------------------------------
# One identity per role. Each subscriber has its own, so each reads only its
# own secrets; the three "invoker" identities only ever call functions.
SA_INTAKE=$NAME_PREFIX-intake
SA_TIMERS=$NAME_PREFIX-timers
SA_SWEEPER=$NAME_PREFIX-sweeper
SA_EMAIL=$NAME_PREFIX-email
SA_ANALYTICS=$NAME_PREFIX-analytics
SA_REFUND=$NAME_PREFIX-refund
SA_CONSOLE=$NAME_PREFIX-console
SA_TASKS_INVOKER=$NAME_PREFIX-tasks-invoker
SA_SCHEDULER=$NAME_PREFIX-scheduler
SA_EVENTS_INVOKER=$NAME_PREFIX-events-invoker
SA_BUILDER=$NAME_PREFIX-builder
# Owns the schema: deploy.sh migrates and applies the grants as its IAM
# database user, with a token the operator mints by impersonating it.
SA_MIGRATOR=$NAME_PREFIX-migrator

SERVICE_ACCOUNTS=(
    "$SA_INTAKE:webhook intake runtime"
    "$SA_TIMERS:timer expiry runtime"
    "$SA_SWEEPER:sweeper runtime"
    "$SA_EMAIL:customer email subscriber runtime"
    "$SA_ANALYTICS:analytics subscriber runtime"
    "$SA_REFUND:refund subscriber runtime"
    "$SA_CONSOLE:operator console runtime"
    "$SA_TASKS_INVOKER:Cloud Tasks OIDC identity calling timer-expiry"
    "$SA_SCHEDULER:Cloud Scheduler OIDC identity calling sweep"
    "$SA_EVENTS_INVOKER:Eventarc push identity calling the subscribers"
    "$SA_BUILDER:Cloud Build identity building the functions"
    "$SA_MIGRATOR:schema owner: migrations and database grants at deploy"
)

sa_email() { printf '%s@%s.iam.gserviceaccount.com' "$1" "$PROJECT_ID"; }

# Cloud SQL's user name for a service account under IAM database auth.
iam_db_user() {
    local email
    email=$(sa_email "$1")
    printf '%s' "${email%.gserviceaccount.com}"
}

# --- Secrets -------------------------------------------------------------------
# Secret Manager holds one secret per environment variable, named after it:
# ORDER_WEBHOOK_SECRET -> order-webhook-secret. Values are added by the
# operator (docs/DEPLOY.md); only db-password is generated by provision.sh.
# SECRET_ENVS (every one any function may read) comes with the function table.

secret_name() { printf '%s' "$1" | tr 'A-Z_' 'a-z-'; }

# --- Functions -----------------------------------------------------------------
# The one list of functions is shared/functions_table.py. Its command prints
# FUNCTIONS (deploy order: timer-expiry first, because the others need its URL)
# and, per function, FN_TABLE_ENTRY, FN_TABLE_TRIGGER (http or a topic),
# FN_TABLE_PUBLIC, FN_TABLE_INGRESS, FN_TABLE_MOVES_SESSIONS and FN_TABLE_SECRETS
# (the secrets it reads under these settings), SECRET_ENVS, and STORE_ENVS (the
# settings of the stores that are on). Standard library only: any python3.
STORE_SWITCH_VALUES=()
for switch in "${STORE_SWITCHES[@]}"; do
    STORE_SWITCH_VALUES+=("$switch=${!switch}")
done
FUNCTION_TABLE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && "$DEPLOY_PYTHON" -m shared.functions_table shell \
    --first timer-expiry DB_IAM_AUTH="$DB_IAM_AUTH" ID_PROVIDER="$ID_PROVIDER" EMAIL_BACKEND="$EMAIL_BACKEND" \
    REFUND_BACKEND="$REFUND_BACKEND" LIGHTSPEED_ENABLED="$LIGHTSPEED_ENABLED" \
    "${STORE_SWITCH_VALUES[@]}") ||
    die "could not read the function table: $DEPLOY_PYTHON -m shared.functions_table failed"
eval "$FUNCTION_TABLE"

# fn_setting FUNCTION KEY DEFAULT: e.g. WEBHOOK_INTAKE_MAX_INSTANCES=20
# overrides the intake's max instances.
fn_setting() {
    local var
    var=$(printf '%s_%s' "$1" "$2" | tr 'a-z-' 'A-Z_')
    printf '%s' "${!var:-$3}"
}

# function_spec NAME sets the FN_* variables describing one function.
# Every function but the public intake takes requests only from inside the
# project (--ingress-settings=internal-only: Cloud Tasks, Cloud Scheduler and
# Eventarc/Pub/Sub push of the same project still reach it; docs/DEPLOY.md).
# The intake serves CONCURRENCY requests at once per instance (gunicorn
# threads, THREADS), with a pool of DB_POOL_SIZE + DB_MAX_OVERFLOW equal to it
# so no request waits for a connection; the others serve one at a time.
# Entry point, trigger, exposure and secrets: the function table's row
# (tests/deploy/test_function_table.py holds deploy.sh's commands to it).
# The email and refund settings go only to the function that uses them: the
# settings check at start-up requires SENDGRID_API_KEY wherever
# EMAIL_BACKEND=sendgrid (and the refund URL and token wherever
# REFUND_BACKEND=http), and only that function may read those secrets.
function_spec() {
    FN_NAME=$1
    [[ -n ${FN_TABLE_ENTRY[$1]:-} ]] || return 1
    FN_ENTRY=${FN_TABLE_ENTRY[$1]}
    FN_TRIGGER=${FN_TABLE_TRIGGER[$1]}
    FN_PUBLIC=${FN_TABLE_PUBLIC[$1]}
    FN_INGRESS=${FN_TABLE_INGRESS[$1]}
    read -r -a FN_SECRET_ENVS <<<"${FN_TABLE_SECRETS[$1]}"
    FN_PUBLISHES=()
    FN_ENV=()
    FN_USES_TASKS=false
    FN_CPU_ALWAYS=false
    local max pool overflow memory timeout concurrency=1 cpu=""
    case $1 in
        webhook-intake)
            FN_SA=$SA_INTAKE FN_USES_TASKS=true
            FN_PUBLISHES=("${TOPICS[@]}")
            # 4 x 8 requests at once; Lightspeed wants an answer within 5 s,
            # so a request still running after 10 s is cut off (and retried by
            # its sender) rather than holding a thread and a connection.
            max=4 concurrency=8 cpu=1 pool=4 overflow=4 memory=512Mi timeout=10s
            # With INTAKE_RELAY=after_response it answers once the order is
            # committed and relays on a thread after the response
            # (shared/handlers/relay_after.py): its CPU must stay allocated
            # between requests (instance-based billing).
            FN_ENV=("INTAKE_RELAY=$INTAKE_RELAY" "RETURNING_CUSTOMER_EMAIL=$RETURNING_CUSTOMER_EMAIL")
            if [[ $INTAKE_RELAY == after_response ]]; then
                FN_CPU_ALWAYS=true
            fi
            ;;
        timer-expiry)
            FN_SA=$SA_TIMERS FN_USES_TASKS=true
            FN_PUBLISHES=("${TOPICS[@]}")
            max=5 pool=2 overflow=1 memory=512Mi timeout=60s
            ;;
        sweep)
            FN_SA=$SA_SWEEPER FN_USES_TASKS=true
            FN_PUBLISHES=("${TOPICS[@]}")
            max=1 pool=2 overflow=1 memory=512Mi timeout=120s
            ;;
        send-customer-email)
            FN_SA=$SA_EMAIL
            FN_PUBLISHES=(verification-events)
            FN_ENV=("EMAIL_BACKEND=$EMAIL_BACKEND" "EMAIL_FROM=$EMAIL_FROM")
            max=5 pool=1 overflow=1 memory=512Mi timeout=120s
            ;;
        record-analytics)
            FN_SA=$SA_ANALYTICS
            max=3 pool=1 overflow=1 memory=256Mi timeout=60s
            ;;
        request-refund)
            FN_SA=$SA_REFUND
            FN_PUBLISHES=(verification-events)
            FN_ENV=("REFUND_BACKEND=$REFUND_BACKEND")
            if [[ $REFUND_BACKEND == http ]]; then
                FN_ENV+=("REFUND_API_URL=$REFUND_API_URL")
            fi
            max=2 pool=1 overflow=1 memory=512Mi timeout=120s
            ;;
        operator-console)
            # Private; staff reach it through IAP (deploy.sh). IAP on Cloud Run guards
            # the run.app URL itself, which staff open from the internet: ingress all
            # (the table's behind_iap), with IAP's service agent the only invoker. Its
            # actions schedule timers and publish like the intake's, so it relays like it.
            FN_SA=$SA_CONSOLE FN_USES_TASKS=true
            FN_PUBLISHES=("${TOPICS[@]}")
            FN_ENV=("CONSOLE_AUTH=iap" "IAP_AUDIENCE=${CONSOLE_IAP_AUDIENCE:-set-by-deploy}"
                "CONSOLE_OPERATORS=$CONSOLE_OPERATORS" "CONSOLE_VIEWERS=$CONSOLE_VIEWERS"
                "CONSOLE_VERIFIERS=$CONSOLE_VERIFIERS")
            max=2 pool=1 overflow=1 memory=512Mi timeout=60s
            ;;
        *)
            return 1
            ;;
    esac
    # The settings (no secrets) of the stores that are on, the table's STORE_ENVS, to
    # each function that moves a session; a store that is off gets none, so its
    # connector stays disabled.
    local var
    if [[ ${FN_TABLE_MOVES_SESSIONS[$1]} == true ]]; then
        for var in "${STORE_ENVS[@]}"; do
            FN_ENV+=("$var=${!var}")
        done
    fi
    FN_MAX_INSTANCES=$(fn_setting "$1" MAX_INSTANCES "$max")
    FN_POOL_SIZE=$(fn_setting "$1" DB_POOL_SIZE "$pool")
    FN_MAX_OVERFLOW=$(fn_setting "$1" DB_MAX_OVERFLOW "$overflow")
    FN_MEMORY=$(fn_setting "$1" MEMORY "$memory")
    FN_TIMEOUT=$(fn_setting "$1" TIMEOUT "$timeout")
    FN_CONCURRENCY=$(fn_setting "$1" CONCURRENCY "$concurrency")
    FN_CPU=$(fn_setting "$1" CPU "$cpu")
    if [[ $DB_IAM_AUTH == true ]]; then
        FN_DB_USER=$(iam_db_user "$FN_SA")
    else
        FN_DB_USER=$DB_USER
    fi
}

# Accept the deployed name (webhook-intake) or the entry point (webhook_intake).
function_name() {
    local fn wanted=${1//_/-}
    for fn in "${FUNCTIONS[@]}"; do
        if [[ $fn == "$wanted" ]]; then
            printf '%s' "$fn"
            return 0
        fi
    done
    return 1
}

function_spec timer-expiry
TASKS_MAX_CONCURRENT_DISPATCHES=${TASKS_MAX_CONCURRENT_DISPATCHES:-$FN_MAX_INSTANCES}

# Every connection any instance of any function may hold, against what the
# instance allows. Prints the arithmetic; fails when it does not fit.
check_pool_budget() {
    local fn total=0 per budget
    budget=$((DB_MAX_CONNECTIONS - DB_CONNECTION_HEADROOM))
    log "Database connections: max_instances x (DB_POOL_SIZE + DB_MAX_OVERFLOW)"
    for fn in "${FUNCTIONS[@]}"; do
        function_spec "$fn"
        per=$((FN_MAX_INSTANCES * (FN_POOL_SIZE + FN_MAX_OVERFLOW)))
        total=$((total + per))
        log "$(printf '  %-20s %3s x (%s + %s) = %3s' "$fn" "$FN_MAX_INSTANCES" \
            "$FN_POOL_SIZE" "$FN_MAX_OVERFLOW" "$per")"
    done
    log "  total $total; max_connections $DB_MAX_CONNECTIONS - headroom $DB_CONNECTION_HEADROOM = $budget"
    for fn in "${FUNCTIONS[@]}"; do
        function_spec "$fn"
        if ((FN_CONCURRENCY > FN_POOL_SIZE + FN_MAX_OVERFLOW)); then
            die "$fn serves $FN_CONCURRENCY requests at once but its pool holds $((FN_POOL_SIZE + FN_MAX_OVERFLOW)) connections; raise its DB_POOL_SIZE/DB_MAX_OVERFLOW or lower its CONCURRENCY"
        fi
        if ((FN_CONCURRENCY > 1)) && [[ -z $FN_CPU ]]; then
            die "$fn serves $FN_CONCURRENCY requests at once, which needs at least one CPU: set $(printf '%s_CPU' "$fn" | tr 'a-z-' 'A-Z_')"
        fi
    done
    if ((total > budget)); then
        die "the functions may open $total connections but only $budget fit; lower max instances or pool sizes, or raise DB_MAX_CONNECTIONS"
    fi
}
