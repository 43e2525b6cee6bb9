#!/usr/bin/env bash
# Step 1 of docs/DEPLOY.md: create everything the functions need in one
# project and region. Idempotent: each resource is described first and
# created only when missing, each IAM binding is read first and added only
# when missing, so a second run only reads.
set -euo pipefail

INFRA_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=infra/lib.sh
source "$INFRA_DIR/lib.sh"

usage() {
    cat <<'EOF'
Usage: infra/provision.sh --project PROJECT_ID --region REGION [--env-file FILE] [--dry-run]

Creates (or confirms) APIs, service accounts and IAM, Cloud SQL, Pub/Sub
topics with dead-letter topics, the Cloud Tasks queue, the BigQuery export,
the Secret Manager secrets, and the monitoring of infra/monitoring/ (log-based
metrics, alert policies notifying ALERT_EMAILS, a dashboard). PROJECT_ID and REGION may also come from the
environment or the env file. --dry-run prints the commands and runs none.
EOF
}

parse_common_args "$@"
[[ ${#POSITIONAL[@]} -eq 0 ]] || die "unexpected argument ${POSITIONAL[0]}"
load_settings
# shellcheck source=infra/config.sh
source "$INFRA_DIR/config.sh"
require_gcloud

P=(--project="$PROJECT_ID")

REQUIRED_APIS=(
    artifactregistry.googleapis.com
    bigquery.googleapis.com
    cloudbuild.googleapis.com
    cloudfunctions.googleapis.com
    cloudresourcemanager.googleapis.com
    cloudscheduler.googleapis.com
    cloudtasks.googleapis.com
    eventarc.googleapis.com
    iam.googleapis.com
    iamcredentials.googleapis.com
    iap.googleapis.com
    logging.googleapis.com
    monitoring.googleapis.com
    pubsub.googleapis.com
    run.googleapis.com
    secretmanager.googleapis.com
    sqladmin.googleapis.com
    storage.googleapis.com
)

enable_apis() {
    note "APIs: list the enabled ones, enable only those missing"
    local enabled api
    local -a missing=()
    capture enabled "" gcloud services list --enabled "${P[@]}" '--format=value(config.name)'
    for api in "${REQUIRED_APIS[@]}"; do
        grep -qxF "$api" <<<"$enabled" || missing+=("$api")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        run gcloud services enable "${missing[@]}" "${P[@]}"
    else
        log "ok   all ${#REQUIRED_APIS[@]} APIs enabled"
    fi
}

create_service_accounts() {
    local entry name
    for entry in "${SERVICE_ACCOUNTS[@]}"; do
        name=${entry%%:*}
        ensure "service account $name" \
            gcloud iam service-accounts describe "$(sa_email "$name")" "${P[@]}" \
            -- gcloud iam service-accounts create "$name" --display-name="${entry#*:}" "${P[@]}"
    done
}

create_secrets() {
    local env name
    for env in "${SECRET_ENVS[@]}"; do
        name=$(secret_name "$env")
        ensure "secret $name" \
            gcloud secrets describe "$name" "${P[@]}" \
            -- gcloud secrets create "$name" --replication-policy=automatic "${P[@]}"
    done
}

create_pubsub() {
    local topic dlt
    for topic in "${TOPICS[@]}"; do
        dlt=$(dead_letter_topic "$topic")
        ensure "topic $topic" \
            gcloud pubsub topics describe "$topic" "${P[@]}" \
            -- gcloud pubsub topics create "$topic" "${P[@]}"
        ensure "topic $dlt" \
            gcloud pubsub topics describe "$dlt" "${P[@]}" \
            -- gcloud pubsub topics create "$dlt" "${P[@]}"
        # A pull subscription that never expires, so a dead-lettered message
        # is kept until someone looks at it.
        ensure "subscription $(dead_letter_subscription "$topic")" \
            gcloud pubsub subscriptions describe "$(dead_letter_subscription "$topic")" "${P[@]}" \
            -- gcloud pubsub subscriptions create "$(dead_letter_subscription "$topic")" \
            --topic="$dlt" --message-retention-duration="$DEAD_LETTER_RETENTION" \
            --expiration-period=never --ack-deadline=60 "${P[@]}"
        # Pub/Sub forwards undeliverable messages as its own service agent.
        ensure_binding roles/pubsub.publisher "$PUBSUB_AGENT" "pubsub topics" "$dlt" "${P[@]}"
    done
}

create_queue() {
    # max-burst-size cannot be set: Cloud Tasks derives it from the dispatch
    # rate (see docs/DEPLOY.md).
    ensure "queue $TASKS_QUEUE" \
        gcloud tasks queues describe "$TASKS_QUEUE" --location="$REGION" "${P[@]}" \
        -- gcloud tasks queues create "$TASKS_QUEUE" --location="$REGION" \
        --max-dispatches-per-second="$TASKS_MAX_DISPATCHES_PER_SECOND" \
        --max-concurrent-dispatches="$TASKS_MAX_CONCURRENT_DISPATCHES" \
        --max-attempts="$TASKS_MAX_ATTEMPTS" \
        --max-retry-duration="$TASKS_MAX_RETRY_DURATION" \
        --min-backoff="$TASKS_MIN_BACKOFF" \
        --max-backoff="$TASKS_MAX_BACKOFF" \
        --max-doublings="$TASKS_MAX_DOUBLINGS" \
        "${P[@]}"
}

create_database() {
    # IAM authentication is on whatever DB_IAM_AUTH says: the migrator always
    # logs in as its service account.
    local flags="max_connections=$DB_MAX_CONNECTIONS,cloudsql.iam_authentication=on"
    ensure "Cloud SQL instance $SQL_INSTANCE" \
        gcloud sql instances describe "$SQL_INSTANCE" "${P[@]}" \
        -- gcloud sql instances create "$SQL_INSTANCE" \
        --database-version="$SQL_DATABASE_VERSION" --edition="$SQL_EDITION" \
        --tier="$SQL_TIER" --region="$REGION" \
        --database-flags="$flags" \
        --connector-enforcement=REQUIRED \
        --storage-auto-increase --backup-start-time=03:00 \
        --enable-point-in-time-recovery --deletion-protection \
        "${P[@]}"
    ensure "database $DB_NAME" \
        gcloud sql databases describe "$DB_NAME" --instance="$SQL_INSTANCE" "${P[@]}" \
        -- gcloud sql databases create "$DB_NAME" --instance="$SQL_INSTANCE" "${P[@]}"
    create_iam_db_users
    [[ $DB_IAM_AUTH == true ]] || create_password_db_user
}

# The built-in user's password lives only in Secret Manager: taken from the
# db-password secret when the operator set one, otherwise generated here and
# stored there. It is never printed and never on a command line: the user is
# created without one, and gcloud reads it from standard input.
create_password_db_user() {
    local secret
    secret=$(secret_name DB_PASSWORD)
    local -a set_password=(gcloud sql users set-password "$DB_USER" --instance="$SQL_INSTANCE"
        --prompt-for-password "${P[@]}")
    if [[ $DRY_RUN == 1 ]]; then
        printf '# database user %s: describe, create only if missing\n' "$DB_USER"
        print_command gcloud sql users describe "$DB_USER" --instance="$SQL_INSTANCE" "${P[@]}"
        print_command gcloud secrets versions access latest --secret="$secret" "${P[@]}"
        printf '# only if %s has no version yet: a random password is piped in\n' "$secret"
        print_command gcloud secrets versions add "$secret" --data-file=- "${P[@]}"
        print_command gcloud sql users create "$DB_USER" --instance="$SQL_INSTANCE" "${P[@]}"
        printf '# the password of %s on standard input (detached from the terminal), never as an argument\n' "$secret"
        print_command "${set_password[@]}"
        return 0
    fi
    if gcloud sql users describe "$DB_USER" --instance="$SQL_INSTANCE" "${P[@]}" >/dev/null 2>&1; then
        log "ok   database user $DB_USER"
        return 0
    fi
    log "new  database user $DB_USER"
    local password
    if ! password=$(gcloud secrets versions access latest --secret="$secret" "${P[@]}" 2>/dev/null); then
        password=$(head -c 48 /dev/urandom | base64 | tr -d '/+=\n')
        password=${password:0:40}
        log "+ gcloud secrets versions add $secret --data-file=- (generated password on stdin)"
        printf '%s' "$password" | gcloud secrets versions add "$secret" --data-file=- "${P[@]}" >/dev/null
    fi
    run gcloud sql users create "$DB_USER" --instance="$SQL_INSTANCE" "${P[@]}"
    log "+ $(print_command "${set_password[@]}") <<< (the password from $secret)"
    # gcloud reads the password with getpass, which reads the terminal when
    # there is one: setsid detaches it, so it reads standard input instead.
    printf '%s\n' "$password" | CLOUDSDK_CORE_DISABLE_PROMPTS=0 setsid -w "${set_password[@]}" >/dev/null
}

# The migrator always; each function's identity with DB_IAM_AUTH=true. They
# start with no privileges: the migrator is made the schema's owner once by
# hand (docs/DEPLOY.md), the functions' users get their roles from deploy.sh.
create_iam_db_users() {
    local fn user
    local -a accounts=("$SA_MIGRATOR")
    if [[ $DB_IAM_AUTH == true ]]; then
        for fn in "${FUNCTIONS[@]}"; do
            function_spec "$fn"
            accounts+=("$FN_SA")
        done
    fi
    for fn in "${accounts[@]}"; do
        user=$(iam_db_user "$fn")
        ensure "IAM database user $user" \
            gcloud sql users describe "$user" --instance="$SQL_INSTANCE" "${P[@]}" \
            -- gcloud sql users create "$user" --instance="$SQL_INSTANCE" \
            --type=cloud_iam_service_account "${P[@]}"
    done
    note "once, as postgres: GRANT cloudsqlsuperuser TO \"$(iam_db_user "$SA_MIGRATOR")\" (docs/DEPLOY.md); the functions' users get their roles from deploy.sh"
}

create_bigquery_export() {
    local dataset="$PROJECT_ID:$BQ_DATASET" table="$PROJECT_ID:$BQ_DATASET.$BQ_TABLE"
    ensure "BigQuery dataset $BQ_DATASET" \
        bq --headless --project_id="$PROJECT_ID" show --format=none "$dataset" \
        -- bq --headless --project_id="$PROJECT_ID" --location="$BQ_LOCATION" mk --dataset \
        --description="Verification lifecycle events exported from Pub/Sub" "$dataset"
    ensure "BigQuery table $BQ_DATASET.$BQ_TABLE" \
        bq --headless --project_id="$PROJECT_ID" show --format=none "$table" \
        -- bq --headless --project_id="$PROJECT_ID" mk --table \
        --description="Every message published to verification-events, with its metadata" \
        --time_partitioning_type=DAY --time_partitioning_field=publish_time \
        --time_partitioning_expiration=$((BQ_PARTITION_EXPIRATION_DAYS * 86400)) \
        --schema="$INFRA_DIR/bigquery/verification_events.schema.json" "$table"
    # The subscription writes as the Pub/Sub service agent.
    ensure_bq_binding roles/bigquery.dataEditor "$PUBSUB_AGENT" "$table"
    ensure "subscription $BQ_SUBSCRIPTION" \
        gcloud pubsub subscriptions describe "$BQ_SUBSCRIPTION" "${P[@]}" \
        -- gcloud pubsub subscriptions create "$BQ_SUBSCRIPTION" \
        --topic=verification-events --bigquery-table="$table" --write-metadata \
        --dead-letter-topic="$(dead_letter_topic verification-events)" \
        --max-delivery-attempts="$BQ_MAX_DELIVERY_ATTEMPTS" \
        --expiration-period=never "${P[@]}"
    ensure_binding roles/pubsub.subscriber "$PUBSUB_AGENT" "pubsub subscriptions" "$BQ_SUBSCRIPTION" "${P[@]}"
}

# Least privilege: every grant below is on the one resource it is needed
# for, except roles/cloudsql.client (and instanceUser), which Cloud SQL only
# offers per project, and the builder's role.
grant_roles() {
    local fn env topic member
    for fn in "${FUNCTIONS[@]}"; do
        function_spec "$fn"
        member="serviceAccount:$(sa_email "$FN_SA")"
        ensure_binding roles/cloudsql.client "$member" projects "$PROJECT_ID"
        if [[ $DB_IAM_AUTH == true ]]; then
            ensure_binding roles/cloudsql.instanceUser "$member" projects "$PROJECT_ID"
        fi
        for env in "${FN_SECRET_ENVS[@]}"; do
            ensure_binding roles/secretmanager.secretAccessor "$member" \
                secrets "$(secret_name "$env")" "${P[@]}"
        done
        for topic in "${FN_PUBLISHES[@]}"; do
            ensure_binding roles/pubsub.publisher "$member" "pubsub topics" "$topic" "${P[@]}"
        done
        if [[ $FN_USES_TASKS == true ]]; then
            ensure_binding roles/cloudtasks.enqueuer "$member" \
                "tasks queues" "$TASKS_QUEUE" --location="$REGION" "${P[@]}"
            # Deleting the timers of a closed session.
            ensure_binding roles/cloudtasks.taskDeleter "$member" \
                "tasks queues" "$TASKS_QUEUE" --location="$REGION" "${P[@]}"
            # Each instance looks the queue up once before its first task
            # (GetQueue), and the sweeper's /health reads it.
            ensure_binding roles/cloudtasks.viewer "$member" \
                "tasks queues" "$TASKS_QUEUE" --location="$REGION" "${P[@]}"
            # A task carrying the invoker's OIDC token may only be created by
            # someone allowed to act as the invoker.
            ensure_binding roles/iam.serviceAccountUser "$member" \
                "iam service-accounts" "$(sa_email "$SA_TASKS_INVOKER")" "${P[@]}"
        fi
    done
    member="serviceAccount:$(sa_email "$SA_MIGRATOR")"
    ensure_binding roles/cloudsql.client "$member" projects "$PROJECT_ID"
    ensure_binding roles/cloudsql.instanceUser "$member" projects "$PROJECT_ID"
    # Pub/Sub mints the OIDC token of the Eventarc push identity.
    ensure_binding roles/iam.serviceAccountTokenCreator "$PUBSUB_AGENT" \
        "iam service-accounts" "$(sa_email "$SA_EVENTS_INVOKER")" "${P[@]}"
    ensure_binding roles/cloudbuild.builds.builder "serviceAccount:$(sa_email "$SA_BUILDER")" \
        projects "$PROJECT_ID"
    # roles/run.invoker is granted per function by deploy.sh, once the
    # function exists.
}

MONITORING_DIR="$INFRA_DIR/monitoring"
# What a dry run shows where a name is only known once the resource exists.
PLACEHOLDER_ID=ID

# The email notification channels of ALERT_EMAILS, found by address or
# created; their names go into CHANNELS.
create_notification_channels() {
    CHANNELS=()
    if [[ -z $ALERT_EMAILS ]]; then
        note "ALERT_EMAILS is not set: no notification channel is created, and the alert policies notify nobody (they still open incidents in the console); set ALERT_EMAILS and run again"
        return 0
    fi
    local email name
    local -a emails
    IFS=, read -r -a emails <<<"$ALERT_EMAILS"
    for email in "${emails[@]}"; do
        [[ -n $email ]] || continue
        capture name "projects/$PROJECT_ID/notificationChannels/$PLACEHOLDER_ID" \
            gcloud beta monitoring channels list \
            "--filter=type=\"email\" AND labels.email_address=\"$email\"" \
            '--format=value(name)' --limit=1 "${P[@]}"
        if [[ $DRY_RUN == 1 ]]; then
            printf '# only if the list above is empty:\n'
        fi
        if [[ $DRY_RUN == 1 || -z $name ]]; then
            local -a create=(gcloud beta monitoring channels create --type=email
                "--display-name=Age verification on-call ($email)"
                "--channel-labels=email_address=$email" '--format=value(name)' "${P[@]}")
            if [[ $DRY_RUN == 1 ]]; then
                print_command "${create[@]}"
            else
                log "new  notification channel for $email"
                log "+ $(print_command "${create[@]}")"
                name=$("${create[@]}") || die "cannot create the notification channel for $email"
            fi
        else
            log "ok   notification channel for $email"
        fi
        CHANNELS+=("$name")
    done
}

# One log-based metric per file, named after it: created, or updated to the file.
apply_log_metrics() {
    local file name
    for file in "$MONITORING_DIR"/metrics/*.json; do
        name=$(basename "$file" .json)
        upsert "log-based metric $name" \
            gcloud logging metrics describe "$name" "${P[@]}" \
            -- gcloud logging metrics create "$name" --config-from-file="$file" "${P[@]}" \
            -- gcloud logging metrics update "$name" --config-from-file="$file" "${P[@]}"
    done
}

# upsert_by_list LABEL COLLECTION LIST-CMD... -- CREATE-CMD... -- UPDATE-CMD-BEFORE-NAME... -- UPDATE-CMD-AFTER-NAME...
# For resources the API names itself (alert policies, dashboards): the list
# command prints the name of the one already made from this file, if any;
# then it is replaced by the file, else created.
upsert_by_list() {
    local label=$1 collection=$2 name
    shift 2
    local -a list=() create=() update=()
    while [[ $1 != "--" ]]; do list+=("$1"); shift; done
    shift
    while [[ $1 != "--" ]]; do create+=("$1"); shift; done
    shift
    while [[ $1 != "--" ]]; do update+=("$1"); shift; done
    shift
    if [[ $DRY_RUN == 1 ]]; then
        printf '# %s: find it, create it if missing, else replace it by the file\n' "$label"
        print_command "${list[@]}"
        print_command "${create[@]}"
        print_command "${update[@]}" "projects/$PROJECT_ID/$collection/$PLACEHOLDER_ID" "$@"
        return 0
    fi
    name=$("${list[@]}" 2>/dev/null) || name=""
    name=${name%%$'\n'*}
    if [[ -n $name ]]; then
        log "upd  $label"
        run_retry "${update[@]}" "$name" "$@" >/dev/null
    else
        log "new  $label"
        run_retry "${create[@]}" >/dev/null
    fi
}

# Alert policies carry the label alert=<file name>, by which a later run finds
# them; each notifies CHANNELS (none when ALERT_EMAILS is unset).
apply_alert_policies() {
    local file slug joined=""
    local -a on_create=() on_update=()
    if [[ ${#CHANNELS[@]} -gt 0 ]]; then
        joined=$(IFS=,; printf '%s' "${CHANNELS[*]}")
        on_create=(--notification-channels="$joined")
        on_update=(--set-notification-channels="$joined")
    fi
    for file in "$MONITORING_DIR"/policies/*.json; do
        slug=$(basename "$file" .json)
        upsert_by_list "alert policy $slug" alertPolicies \
            gcloud alpha monitoring policies list "--filter=userLabels.alert=$slug" \
            '--format=value(name)' "${P[@]}" \
            -- gcloud alpha monitoring policies create --policy-from-file="$file" "${on_create[@]}" "${P[@]}" \
            -- gcloud alpha monitoring policies update \
            -- --policy-from-file="$file" "${on_update[@]}" "${P[@]}"
    done
}

# Dashboards are found by their display name, the first line of each file
# that names one.
apply_dashboards() {
    local file title
    for file in "$MONITORING_DIR"/dashboards/*.json; do
        title=$(sed -n 's/^  "displayName": "\(.*\)",\{0,1\}$/\1/p' "$file" | head -n 1)
        [[ -n $title ]] || die "$file: no top-level displayName"
        upsert_by_list "dashboard $title" dashboards \
            gcloud monitoring dashboards list "--filter=displayName=\"$title\"" \
            '--format=value(name)' "${P[@]}" \
            -- gcloud monitoring dashboards create --config-from-file="$file" "${P[@]}" \
            -- gcloud monitoring dashboards update \
            -- --config-from-file="$file" "${P[@]}"
    done
}

create_monitoring() {
    note "Monitoring: log-based metrics, notification channels, alert policies, dashboards (infra/monitoring/)"
    apply_log_metrics
    create_notification_channels
    apply_alert_policies
    apply_dashboards
}

main() {
    log "Provisioning project $PROJECT_ID, region $REGION"
    check_pool_budget
    enable_apis
    local project_number
    capture project_number PROJECT_NUMBER \
        gcloud projects describe "$PROJECT_ID" '--format=value(projectNumber)'
    [[ -n $project_number ]] || die "cannot read the number of project $PROJECT_ID"
    PUBSUB_AGENT="serviceAccount:service-$project_number@gcp-sa-pubsub.iam.gserviceaccount.com"
    create_service_accounts
    create_secrets
    create_pubsub
    create_queue
    create_database
    create_bigquery_export
    grant_roles
    create_monitoring
    log "Done. Next: set the secret values (docs/DEPLOY.md), then ./deploy.sh --project $PROJECT_ID --region $REGION"
}

main
