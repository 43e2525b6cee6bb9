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
VERIFF_BASE_URL=${VERIFF_BASE_URL:-https://stationapi.veriff.com}
EMAIL_BACKEND=${EMAIL_BACKEND:-sendgrid}
EMAIL_FROM=${EMAIL_FROM:-}
REFUND_BACKEND=${REFUND_BACKEND:-manual}
REFUND_API_URL=${REFUND_API_URL:-}
LIGHTSPEED_ENABLED=${LIGHTSPEED_ENABLED:-true}
# after_response: the intake answers, then relays on a thread (its CPU stays
# allocated: instance-based billing); in_request: it relays before answering.
INTAKE_RELAY=${INTAKE_RELAY:-after_response}
# Who may open the operator console through Identity-Aware Proxy: IAM members,
# comma-separated (group:ops@store.example,user:alice@store.example).
CONSOLE_ACCESS=${CONSOLE_ACCESS:-}
# The audience IAP puts in its assertions; deploy.sh derives the Cloud Run one
# (/projects/NUMBER/locations/REGION/services/operator-console) when unset.
CONSOLE_IAP_AUDIENCE=${CONSOLE_IAP_AUDIENCE:-}

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
SECRET_ENVS=(ORDER_WEBHOOK_SECRET LIGHTSPEED_CLIENT_SECRET VERIFF_API_KEY
    VERIFF_SHARED_SECRET SENDGRID_API_KEY REFUND_API_TOKEN DB_PASSWORD CONSOLE_SECRET
    CUSTOMER_KEY_SECRET)

secret_name() { printf '%s' "$1" | tr 'A-Z_' 'a-z-'; }

# --- Functions -----------------------------------------------------------------
# Deploy order: timer-expiry first, because the others need its URL.
FUNCTIONS=(timer-expiry webhook-intake sweep send-customer-email record-analytics request-refund
    operator-console)

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
# Secrets: exactly those shared/functions_table.py lists for the function
# (tests/deploy/test_function_secrets.py holds the two together).
# The email and refund settings go only to the function that uses them: the
# settings check at start-up requires SENDGRID_API_KEY wherever
# EMAIL_BACKEND=sendgrid (and the refund URL and token wherever
# REFUND_BACKEND=http), and only that function may read those secrets.
function_spec() {
    FN_NAME=$1
    FN_PUBLISHES=()
    FN_SECRET_ENVS=()
    FN_ENV=()
    FN_USES_TASKS=false
    FN_PUBLIC=false
    FN_TRIGGER=http
    FN_CPU_ALWAYS=false
    local max pool overflow memory timeout concurrency=1 cpu="" ingress=internal-only
    case $1 in
        webhook-intake)
            FN_ENTRY=webhook_intake FN_SA=$SA_INTAKE FN_PUBLIC=true FN_USES_TASKS=true
            FN_PUBLISHES=("${TOPICS[@]}")
            # CUSTOMER_KEY_SECRET: the pepper of verify once's customer keys (DESIGN.md 3b).
            FN_SECRET_ENVS=(ORDER_WEBHOOK_SECRET VERIFF_API_KEY VERIFF_SHARED_SECRET CUSTOMER_KEY_SECRET)
            [[ $LIGHTSPEED_ENABLED == true ]] && FN_SECRET_ENVS+=(LIGHTSPEED_CLIENT_SECRET)
            # 4 x 8 requests at once; Lightspeed wants an answer within 5 s,
            # so a request still running after 10 s is cut off (and retried by
            # its sender) rather than holding a thread and a connection.
            max=4 concurrency=8 cpu=1 pool=4 overflow=4 memory=512Mi timeout=10s
            # With INTAKE_RELAY=after_response it answers once the order is
            # committed and relays on a thread after the response
            # (shared/handlers/relay_after.py): its CPU must stay allocated
            # between requests (instance-based billing).
            FN_ENV=("INTAKE_RELAY=$INTAKE_RELAY")
            if [[ $INTAKE_RELAY == after_response ]]; then
                FN_CPU_ALWAYS=true
            fi
            ;;
        timer-expiry)
            FN_ENTRY=timer_expiry FN_SA=$SA_TIMERS FN_USES_TASKS=true
            FN_PUBLISHES=("${TOPICS[@]}")
            max=5 pool=2 overflow=1 memory=512Mi timeout=60s
            ;;
        sweep)
            FN_ENTRY=sweep FN_SA=$SA_SWEEPER FN_USES_TASKS=true
            FN_PUBLISHES=("${TOPICS[@]}")
            max=1 pool=2 overflow=1 memory=512Mi timeout=120s
            ;;
        send-customer-email)
            FN_ENTRY=send_customer_email FN_SA=$SA_EMAIL FN_TRIGGER=customer-emails
            FN_PUBLISHES=(verification-events)
            # The API key creates the Veriff session behind the link; only the
            # intake checks Veriff's signatures, so only it reads the shared secret.
            FN_SECRET_ENVS=(VERIFF_API_KEY)
            [[ $EMAIL_BACKEND == sendgrid ]] && FN_SECRET_ENVS+=(SENDGRID_API_KEY)
            FN_ENV=("EMAIL_BACKEND=$EMAIL_BACKEND" "EMAIL_FROM=$EMAIL_FROM")
            max=5 pool=1 overflow=1 memory=512Mi timeout=120s
            ;;
        record-analytics)
            FN_ENTRY=record_analytics FN_SA=$SA_ANALYTICS FN_TRIGGER=verification-events
            max=3 pool=1 overflow=1 memory=256Mi timeout=60s
            ;;
        request-refund)
            FN_ENTRY=request_refund FN_SA=$SA_REFUND FN_TRIGGER=order-actions
            FN_PUBLISHES=(verification-events)
            FN_ENV=("REFUND_BACKEND=$REFUND_BACKEND")
            if [[ $REFUND_BACKEND == http ]]; then
                FN_SECRET_ENVS+=(REFUND_API_TOKEN)
                FN_ENV+=("REFUND_API_URL=$REFUND_API_URL")
            fi
            max=2 pool=1 overflow=1 memory=512Mi timeout=120s
            ;;
        operator-console)
            # Private; staff reach it through IAP (deploy.sh). IAP on Cloud Run guards
            # the run.app URL itself, which staff open from the internet: ingress all,
            # with IAP's service agent the only invoker. Its actions schedule timers
            # and publish like the intake's, so it relays like the intake.
            FN_ENTRY=operator_console FN_SA=$SA_CONSOLE FN_USES_TASKS=true ingress=all
            FN_PUBLISHES=("${TOPICS[@]}")
            FN_SECRET_ENVS=(CONSOLE_SECRET CUSTOMER_KEY_SECRET)
            FN_ENV=("CONSOLE_AUTH=iap" "IAP_AUDIENCE=${CONSOLE_IAP_AUDIENCE:-set-by-deploy}")
            max=2 pool=1 overflow=1 memory=512Mi timeout=60s
            ;;
        *)
            return 1
            ;;
    esac
    [[ $DB_IAM_AUTH == true ]] || FN_SECRET_ENVS+=(DB_PASSWORD)
    FN_MAX_INSTANCES=$(fn_setting "$1" MAX_INSTANCES "$max")
    FN_POOL_SIZE=$(fn_setting "$1" DB_POOL_SIZE "$pool")
    FN_MAX_OVERFLOW=$(fn_setting "$1" DB_MAX_OVERFLOW "$overflow")
    FN_MEMORY=$(fn_setting "$1" MEMORY "$memory")
    FN_TIMEOUT=$(fn_setting "$1" TIMEOUT "$timeout")
    FN_CONCURRENCY=$(fn_setting "$1" CONCURRENCY "$concurrency")
    FN_CPU=$(fn_setting "$1" CPU "$cpu")
    if [[ $FN_PUBLIC == true ]]; then
        FN_INGRESS=all
    else
        FN_INGRESS=$ingress
    fi
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
