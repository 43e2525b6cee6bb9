#!/usr/bin/env bash
# Step 2 of docs/DEPLOY.md: deploy the functions from this source tree and
# wire what needs them to exist: who may invoke each one, the dead-letter and
# retry policies of the subscriptions their triggers create, and the
# Scheduler job that calls sweep. Run infra/provision.sh first.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=infra/lib.sh
source "$ROOT/infra/lib.sh"

usage() {
    cat <<'EOF'
Usage: ./deploy.sh --project PROJECT_ID --region REGION [--env-file FILE] [--dry-run]
                   [--allow-public-console] [FUNCTION...]

Deploys every function (or only the ones named: webhook_intake or
webhook-intake, timer_expiry, sweep, send_customer_email, record_analytics,
request_refund, operator_console), then prints the webhook URLs to register with the store,
Lightspeed and Veriff. --dry-run prints every command and runs none.
--allow-public-console lets CONSOLE_ACCESS name allUsers, allAuthenticatedUsers
or a public email domain (domain:gmail.com); without it they are refused.
EOF
}

ARGS=()
for arg in "$@"; do
    if [[ $arg == --allow-public-console ]]; then
        export CONSOLE_ALLOW_PUBLIC=true
    else
        ARGS+=("$arg")
    fi
done
parse_common_args "${ARGS[@]}"
load_settings
# shellcheck source=infra/config.sh
source "$ROOT/infra/config.sh"
require_gcloud

# Tests point this at a stand-in source tree; --source=. is always relative
# to it.
SOURCE_DIR=${DEPLOY_SOURCE_DIR:-$ROOT}
P=(--project="$PROJECT_ID")
R=(--region="$REGION")

SELECTED=()
if [[ ${#POSITIONAL[@]} -eq 0 ]]; then
    SELECTED=("${FUNCTIONS[@]}")
else
    for wanted in "${POSITIONAL[@]}"; do
        name=$(function_name "$wanted") || die "unknown function $wanted (one of: ${FUNCTIONS[*]})"
        SELECTED+=("$name")
    done
fi

selected() {
    local fn
    for fn in "${SELECTED[@]}"; do
        [[ $fn == "$1" ]] && return 0
    done
    return 1
}

# Settings that have no safe default. A dry run shows a placeholder instead.
require_setting() {
    local var=$1 placeholder=$2
    if [[ -z ${!var} ]]; then
        [[ $DRY_RUN == 1 ]] || die "$var is not set (put it in the --env-file; see docs/DEPLOY.md)"
        log "warning: $var is not set; showing $placeholder"
        printf -v "$var" '%s' "$placeholder"
    fi
}

check_source() {
    local fn file missing=0
    for file in main.py requirements.txt; do
        if [[ ! -f $SOURCE_DIR/$file ]]; then
            log "warning: $SOURCE_DIR/$file is missing"
            missing=1
        fi
    done
    for fn in "${SELECTED[@]}"; do
        function_spec "$fn"
        if [[ -f $SOURCE_DIR/main.py ]] && ! grep -qw "$FN_ENTRY" "$SOURCE_DIR/main.py"; then
            log "warning: main.py does not mention the entry point $FN_ENTRY"
            missing=1
        fi
    done
    if [[ $missing == 1 && $DRY_RUN != 1 ]]; then
        die "the source tree $SOURCE_DIR is not deployable"
    fi
}

# A secret without a value makes the deploy fail late, after the build;
# say which one, and how to set it, before anything is deployed.
check_secret_values() {
    local fn env name version
    local -a names=()
    for fn in "${SELECTED[@]}"; do
        function_spec "$fn"
        for env in "${FN_SECRET_ENVS[@]}"; do
            name=$(secret_name "$env")
            [[ " ${names[*]} " == *" $name "* ]] || names+=("$name")
        done
    done
    note "secrets: each must have an enabled version"
    for name in "${names[@]}"; do
        local -a list=(gcloud secrets versions list "$name" "${P[@]}" --filter=state:ENABLED --limit=1
                       '--format=value(name)')
        if [[ $DRY_RUN == 1 ]]; then
            print_command "${list[@]}"
            continue
        fi
        # A listing that fails is not an empty one: say which it was.
        version=$("${list[@]}" 2>/dev/null) ||
            die "could not list the versions of secret $name: it does not exist (infra/provision.sh creates it) or this account may not read it"
        if [[ -z $version ]]; then
            die "secret $name has no value; add one with: printf '%s' 'VALUE' | gcloud secrets versions add $name --data-file=- --project=$PROJECT_ID"
        fi
    done
}

env_vars() {
    local timer_url=$1
    local -a vars=(
        "GOOGLE_CLOUD_PROJECT=$PROJECT_ID"
        "INSTANCE_CONNECTION_NAME=$INSTANCE_CONNECTION_NAME"
        "DB_NAME=$DB_NAME"
        "DB_USER=$FN_DB_USER"
        "DB_IAM_AUTH=$DB_IAM_AUTH"
        "DB_POOL_SIZE=$FN_POOL_SIZE"
        "DB_MAX_OVERFLOW=$FN_MAX_OVERFLOW"
        "VERIFICATION_WINDOW=$VERIFICATION_WINDOW"
        "REMINDER_OFFSETS=$REMINDER_OFFSETS"
        "STORE_TIMEZONE=$STORE_TIMEZONE"
        "TASKS_BACKEND=cloud"
        "TASKS_LOCATION=$REGION"
        "TASKS_QUEUE=$TASKS_QUEUE"
        "TIMER_URL=$timer_url"
        "TASKS_SERVICE_ACCOUNT=$(sa_email "$SA_TASKS_INVOKER")"
        "EVENTS_BACKEND=pubsub"
        "ID_PROVIDER=$ID_PROVIDER"
        "VERIFF_BASE_URL=$VERIFF_BASE_URL"
        # functions-framework's gunicorn runs this many threads (its default
        # is 4 per CPU it sees); one per request the platform may send.
        "THREADS=$FN_CONCURRENCY"
        "${FN_ENV[@]}"
    )
    # "^|^" makes | the separator, so values may hold commas
    # (REMINDER_OFFSETS=24h,60h).
    local joined="" var
    for var in "${vars[@]}"; do
        [[ $var == *"|"* ]] && die "setting ${var%%=*} must not contain |"
        joined+="|$var"
    done
    printf '^|^%s' "${joined#|}"
}

secret_refs() {
    local env joined=""
    for env in "${FN_SECRET_ENVS[@]}"; do
        joined+=",$env=$(secret_name "$env"):latest"
    done
    printf '%s' "${joined#,}"
}

deploy_function() {
    local fn=$1 timer_url=$2
    function_spec "$fn"
    local -a cmd=(gcloud functions deploy "$fn" --gen2 "${R[@]}" "${P[@]}"
        --runtime="$RUNTIME" --source=. --entry-point="$FN_ENTRY")
    if [[ $FN_TRIGGER == http ]]; then
        cmd+=(--trigger-http)
    else
        cmd+=(--trigger-topic="$FN_TRIGGER" --retry
            --trigger-service-account="$(sa_email "$SA_EVENTS_INVOKER")")
    fi
    if [[ $FN_PUBLIC == true ]]; then
        cmd+=(--allow-unauthenticated)
    else
        cmd+=(--no-allow-unauthenticated)
    fi
    cmd+=(--service-account="$(sa_email "$FN_SA")"
        --build-service-account="projects/$PROJECT_ID/serviceAccounts/$(sa_email "$SA_BUILDER")"
        --memory="$FN_MEMORY" --timeout="$FN_TIMEOUT"
        --max-instances="$FN_MAX_INSTANCES" --concurrency="$FN_CONCURRENCY"
        --ingress-settings="$FN_INGRESS"
        # After a rollback by traffic split, a deploy must serve the new code.
        --serve-all-traffic-latest-revision
        --set-env-vars="$(env_vars "$timer_url")")
    [[ -n $FN_CPU ]] && cmd+=(--cpu="$FN_CPU")
    [[ ${#FN_SECRET_ENVS[@]} -gt 0 ]] && cmd+=(--set-secrets="$(secret_refs)")
    (cd "$SOURCE_DIR" && run "${cmd[@]}")
}

function_url() {
    local __var=$1 fn=$2
    capture "$__var" "https://$fn-dry-run.a.run.app" \
        gcloud functions describe "$fn" "${R[@]}" "${P[@]}" '--format=value(serviceConfig.uri)'
}

grant_invoker() {
    local fn=$1 sa=$2
    ensure_binding roles/run.invoker "serviceAccount:$(sa_email "$sa")" \
        "run services" "$fn" "${R[@]}" "${P[@]}"
}

# The trigger of an event function owns a push subscription it created
# itself; give it the retry policy and the dead-letter topic.
wire_subscription() {
    local fn=$1 trigger subscription
    function_spec "$fn"
    grant_invoker "$fn" "$SA_EVENTS_INVOKER"
    capture trigger "projects/$PROJECT_ID/locations/$REGION/triggers/$fn-TRIGGER" \
        gcloud functions describe "$fn" "${R[@]}" "${P[@]}" '--format=value(eventTrigger.trigger)'
    [[ -n $trigger ]] || die "cannot find the Eventarc trigger of $fn"
    capture subscription "projects/$PROJECT_ID/subscriptions/eventarc-$REGION-$fn-SUBSCRIPTION" \
        gcloud eventarc triggers describe "$trigger" --location="$REGION" "${P[@]}" \
        '--format=value(transport.pubsub.subscription)'
    [[ -n $subscription ]] || die "cannot find the Pub/Sub subscription of trigger $trigger"
    run gcloud pubsub subscriptions update "$subscription" "${P[@]}" \
        --dead-letter-topic="$(dead_letter_topic "$FN_TRIGGER")" \
        --max-delivery-attempts="$DEAD_LETTER_MAX_DELIVERY_ATTEMPTS" \
        --min-retry-delay="$SUBSCRIBER_MIN_RETRY_DELAY" \
        --max-retry-delay="$SUBSCRIBER_MAX_RETRY_DELAY"
    # Forwarding to the dead-letter topic acknowledges the message on this
    # subscription, as the Pub/Sub service agent.
    ensure_binding roles/pubsub.subscriber "$PUBSUB_AGENT" \
        "pubsub subscriptions" "$subscription" "${P[@]}"
}

# Email domains anyone can get an address at: domain:gmail.com admits the world.
PUBLIC_EMAIL_DOMAINS=(gmail.com googlemail.com outlook.com hotmail.com live.com msn.com yahoo.com ymail.com
    icloud.com me.com mac.com aol.com proton.me protonmail.com gmx.com gmx.net gmx.de web.de mail.com
    yandex.com yandex.ru zoho.com fastmail.com hey.com qq.com 163.com)
IAP_ACCESSOR=roles/iap.httpsResourceAccessor

# split_members LIST: MEMBERS gets LIST's comma-separated members, trimmed;
# "group:ops@x.example, user:a@x.example" (a space after the comma) is meant
# as two members, not one whose name starts with a space.
split_members() {
    local entry
    local -a entries=()
    MEMBERS=()
    IFS=, read -r -a entries <<<"$1"
    for entry in "${entries[@]}"; do
        entry=${entry#"${entry%%[![:space:]]*}"}
        entry=${entry%"${entry##*[![:space:]]}"}
        [[ -n $entry ]] && MEMBERS+=("$entry")
    done
    return 0
}

# A member that admits anyone with a Google account or a free mailbox.
broad_member() {
    local member=${1,,} domain
    [[ $member == allusers || $member == allauthenticatedusers ]] && return 0
    [[ $member == domain:* ]] || return 1
    for domain in "${PUBLIC_EMAIL_DOMAINS[@]}"; do
        [[ ${member#domain:} == "$domain" ]] && return 0
    done
    return 1
}

# Before anything is deployed: who may reach the console, and who may use it.
check_console_access() {
    local var member
    for var in CONSOLE_ACCESS CONSOLE_OPERATORS CONSOLE_VIEWERS CONSOLE_VERIFIERS; do
        split_members "${!var}"
        for member in "${MEMBERS[@]}"; do
            broad_member "$member" || continue
            [[ $CONSOLE_ALLOW_PUBLIC == true ]] ||
                die "$var names $member, which lets anyone in; name people or your own domain" \
                    "(or pass --allow-public-console if that is really meant)"
            log "warning: $var names $member (allowed by --allow-public-console)"
        done
    done
    if [[ -z $CONSOLE_OPERATORS && -z $CONSOLE_VIEWERS ]]; then
        [[ $DRY_RUN == 1 ]] ||
            die "CONSOLE_OPERATORS (or CONSOLE_VIEWERS) is not set: the console serves only the people it lists (docs/DEPLOY.md)"
        log "warning: CONSOLE_OPERATORS is not set; showing ops@store.example"
        CONSOLE_OPERATORS=ops@store.example
    fi
}

# The console is private: Identity-Aware Proxy in front of its Cloud Run
# service, IAP's service agent its only invoker, and the CONSOLE_ACCESS members
# the only people IAP lets through (docs/DEPLOY.md, "Operator console"): the
# members IAP's policy names beyond them are removed, so taking someone off
# the list and deploying again revokes them.
protect_console() {
    local project_number=$1 member
    run gcloud beta run services update operator-console "${R[@]}" "${P[@]}" --iap
    ensure_binding roles/run.invoker \
        "serviceAccount:service-$project_number@gcp-sa-iap.iam.gserviceaccount.com" \
        "run services" operator-console "${R[@]}" "${P[@]}"
    split_members "$CONSOLE_ACCESS"
    local -a members=("${MEMBERS[@]}")
    # IAP on a Cloud Run service is a beta resource type of the CLI (`iap web` offers only
    # app-engine, backend-services and forwarding-rule in gcloud 528).
    local -a resource=(--resource-type=cloud-run --service=operator-console "${R[@]}" "${P[@]}")
    if [[ ${#members[@]} -eq 0 ]]; then
        log "CONSOLE_ACCESS is empty: nobody can open the operator console (see docs/DEPLOY.md)"
    else
        local url
        function_url url operator-console
        log "operator console (staff, through IAP): $url"
    fi
    for member in "${members[@]}"; do
        ensure_binding "$IAP_ACCESSOR" "$member" "beta iap web" "${resource[@]}"
    done
    local -a get=(gcloud beta iap web get-iam-policy "${resource[@]}" "${iam_policy_flags[@]}")
    if [[ $DRY_RUN == 1 ]]; then
        printf '# %s: remove every member not in CONSOLE_ACCESS (%s)\n' "$IAP_ACCESSOR" "${members[*]:-nobody}"
        print_command "${get[@]}"
        print_command gcloud beta iap web remove-iam-policy-binding "${resource[@]}" --member=user:not-on-the-list@store.example \
            --role="$IAP_ACCESSOR"
        return 0
    fi
    local policy role stray kept removed=0
    policy=$("${get[@]}") || die "cannot read the IAP policy of operator-console"
    while IFS=$'\t' read -r role stray; do
        [[ $role == "$IAP_ACCESSOR" && -n $stray ]] || continue
        kept=0
        for member in "${members[@]}"; do
            [[ ${member,,} == "${stray,,}" ]] && kept=1
        done
        [[ $kept == 1 ]] && continue
        log "gone $IAP_ACCESSOR for $stray (not in CONSOLE_ACCESS)"
        run_retry gcloud beta iap web remove-iam-policy-binding "${resource[@]}" --member="$stray" \
            --role="$IAP_ACCESSOR" >/dev/null || die "cannot remove $stray from the console's IAP policy"
        removed=$((removed + 1))
    done <<<"$policy"
    log "IAP policy of operator-console: ${#members[@]} member(s) of CONSOLE_ACCESS, $removed removed"
}

# Before any function: bring the schema to this code's version and the
# database roles to shared/db/grants.py, as the migrator (the schema's
# owner), each function's database user a member of its own role. The
# migrator logs in with a short-lived token of its service account as its
# password, passed in the environment, never as an argument.
migrate_database() {
    local fn token user account
    local -a members=()
    for fn in "${FUNCTIONS[@]}"; do
        function_spec "$fn"
        members+=(--member "$fn=$FN_DB_USER")
    done
    account=$(sa_email "$SA_MIGRATOR")
    user=$(iam_db_user "$SA_MIGRATOR")
    note "schema and database roles: python -m shared.db.upgrade as $user"
    capture token DRY-RUN-TOKEN gcloud auth print-access-token --impersonate-service-account="$account" "${P[@]}"
    [[ -n $token ]] || die "cannot get a token for $account: you need roles/iam.serviceAccountTokenCreator on it (docs/DEPLOY.md)"
    (
        export INSTANCE_CONNECTION_NAME DB_NAME
        export DB_USER=$user DB_IAM_AUTH=false DB_PASSWORD=$token
        unset DATABASE_URL
        # The shared package of this source tree, whatever the caller's path.
        export PYTHONPATH=$SOURCE_DIR
        cd "$SOURCE_DIR"
        run "$DEPLOY_PYTHON" -m shared.db.upgrade "${members[@]}"
    ) || die "the schema step failed; no function was deployed"
}

# The Scheduler job lives with the infrastructure but needs sweep's URL, so
# it is created (or pointed at the current URL) here.
schedule_sweep() {
    local url=$1
    local -a job=(--location="$REGION" "${P[@]}" --schedule="$SWEEP_SCHEDULE" --time-zone=Etc/UTC
        --uri="$url" --http-method=POST
        --oidc-service-account-email="$(sa_email "$SA_SCHEDULER")" --oidc-token-audience="$url"
        --attempt-deadline="$SWEEP_ATTEMPT_DEADLINE"
        # The next run is a minute away; a retry would only overlap it.
        --max-retry-attempts=0)
    local -a describe=(gcloud scheduler jobs describe "$SWEEP_JOB" --location="$REGION" "${P[@]}")
    if [[ $DRY_RUN == 1 ]]; then
        note "Scheduler job $SWEEP_JOB: describe, then update it if it exists, else create it"
        print_command "${describe[@]}"
        print_command gcloud scheduler jobs update http "$SWEEP_JOB" "${job[@]}"
        print_command gcloud scheduler jobs create http "$SWEEP_JOB" "${job[@]}"
        return 0
    fi
    # Update rather than leave alone: the job must follow sweep's current URL.
    if "${describe[@]}" >/dev/null 2>&1; then
        run gcloud scheduler jobs update http "$SWEEP_JOB" "${job[@]}"
    else
        run gcloud scheduler jobs create http "$SWEEP_JOB" "${job[@]}"
    fi
}

main() {
    log "Deploying ${SELECTED[*]} to project $PROJECT_ID, region $REGION"
    check_pool_budget
    check_source
    if selected send-customer-email; then
        require_setting EMAIL_FROM "verification@example.com"
    fi
    if selected request-refund && [[ $REFUND_BACKEND == http ]]; then
        require_setting REFUND_API_URL "https://refunds.example.com/api"
    fi
    local required switch setting example
    for required in "${STORE_REQUIRED[@]}"; do  # each store's own, from the function table
        read -r switch setting example <<<"$required"
        if [[ ${!switch} == true ]]; then
            require_setting "$setting" "$example"
        fi
    done
    if selected operator-console; then
        check_console_access
    fi
    check_secret_values
    migrate_database

    local project_number
    capture project_number PROJECT_NUMBER \
        gcloud projects describe "$PROJECT_ID" '--format=value(projectNumber)'
    [[ -n $project_number ]] || die "cannot read the number of project $PROJECT_ID"
    PUBSUB_AGENT="serviceAccount:service-$project_number@gcp-sa-pubsub.iam.gserviceaccount.com"
    # What IAP puts in the console's assertions when it fronts the Cloud Run service itself.
    CONSOLE_IAP_AUDIENCE=${CONSOLE_IAP_AUDIENCE:-/projects/$project_number/locations/$REGION/services/operator-console}

    # TIMER_URL is the OIDC audience of every task, so every function gets
    # timer-expiry's URL; timer-expiry itself creates tasks too.
    local timer_url
    note "timer-expiry's URL (the audience of the tasks' OIDC tokens)"
    function_url timer_url timer-expiry
    if selected timer-expiry; then
        if [[ -n $timer_url ]]; then
            deploy_function timer-expiry "$timer_url"
        else
            # First deployment: its URL exists only once it is deployed, so
            # deploy it with its cloudfunctions.net URL, then again with the
            # real one.
            deploy_function timer-expiry "https://$REGION-$PROJECT_ID.cloudfunctions.net/timer-expiry"
            function_url timer_url timer-expiry
            [[ -n $timer_url ]] || die "timer-expiry was deployed but has no URL"
            deploy_function timer-expiry "$timer_url"
        fi
        [[ $DRY_RUN == 1 ]] && note "(on the very first deployment timer-expiry is deployed twice: once to learn its URL)"
        grant_invoker timer-expiry "$SA_TASKS_INVOKER"
    fi
    [[ -n $timer_url ]] || die "timer-expiry is not deployed yet; deploy it first (./deploy.sh ... timer_expiry)"

    local fn url
    for fn in "${FUNCTIONS[@]}"; do
        [[ $fn == timer-expiry ]] && continue
        selected "$fn" || continue
        deploy_function "$fn" "$timer_url"
        function_spec "$fn"
        if [[ $FN_CPU_ALWAYS == true ]]; then
            # Cloud Run's billing setting: CPU between requests, for the relay
            # thread (docs/DEPLOY.md, "The intake's relay"). Set after every deploy.
            run gcloud run services update "$fn" "${R[@]}" "${P[@]}" --no-cpu-throttling
        fi
        if [[ $FN_TRIGGER != http ]]; then
            wire_subscription "$fn"
        elif [[ $fn == sweep ]]; then
            grant_invoker sweep "$SA_SCHEDULER"
            function_url url sweep
            [[ -n $url ]] || die "sweep was deployed but has no URL"
            schedule_sweep "$url"
        elif [[ $fn == operator-console ]]; then
            protect_console "$project_number"
        fi
    done

    function_url url webhook-intake
    if [[ -z $url ]]; then
        log "webhook-intake is not deployed yet: no webhook URLs to show"
        return 0
    fi
    cat <<EOF

Webhook URLs to register (all POST):
  store order webhook (Standard Webhooks):  $url/webhooks/orders
  Lightspeed Retail X-Series webhook:       $url/webhooks/lightspeed
  Veriff decision webhook:                  $url/webhooks/veriff
Health check:                               $url/healthz
EOF
}

main
