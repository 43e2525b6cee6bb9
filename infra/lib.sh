# shellcheck shell=bash
# Helpers shared by infra/provision.sh and deploy.sh. Sourced, never run.
#
# DRY_RUN=1 makes every helper print the command it would run, one per line,
# on stdout, and run nothing: not even the read-only describe calls, so a dry
# run needs neither credentials nor a network. Progress messages go to stderr.

DRY_RUN=${DRY_RUN:-0}
RETRY_DELAY=${RETRY_DELAY:-5}

log() {
    printf '%s\n' "$*" >&2
}

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Quote one word for the shell, leaving common safe words bare so dry-run
# output stays readable and can be pasted back into a shell.
shell_quote() {
    local word=$1
    if [[ $word =~ ^[A-Za-z0-9_./:=@,+%^-]+$ ]]; then
        printf '%s' "$word"
    else
        printf "'%s'" "${word//\'/\'\\\'\'}"
    fi
}

print_command() {
    local word line=""
    for word in "$@"; do
        line+="${line:+ }$(shell_quote "$word")"
    done
    printf '%s\n' "$line"
}

# A comment line in dry-run output (explains the commands that follow).
note() {
    if [[ $DRY_RUN == 1 ]]; then
        printf '# %s\n' "$*"
    else
        log "== $*"
    fi
}

run() {
    if [[ $DRY_RUN == 1 ]]; then
        print_command "$@"
        return 0
    fi
    log "+ $(print_command "$@")"
    "$@"
}

# Like run, but retries a few times: IAM changes that name a service account
# created seconds earlier can fail until the account has propagated.
run_retry() {
    if [[ $DRY_RUN == 1 ]]; then
        print_command "$@"
        return 0
    fi
    local attempt
    for attempt in 1 2 3 4 5; do
        log "+ $(print_command "$@")"
        if "$@"; then
            return 0
        fi
        [[ $attempt == 5 ]] && break
        log "   retrying in $((attempt * RETRY_DELAY)) s"
        sleep $((attempt * RETRY_DELAY))
    done
    return 1
}

# capture VAR PLACEHOLDER CMD...: VAR gets the command's stdout (empty when
# the command fails). In a dry run the command is printed and VAR gets
# PLACEHOLDER, so the commands that depend on it can still be shown.
capture() {
    local __var=$1 __placeholder=$2 __value=""
    shift 2
    if [[ $DRY_RUN == 1 ]]; then
        print_command "$@"
        __value=$__placeholder
    else
        __value=$("$@" 2>/dev/null) || __value=""
    fi
    printf -v "$__var" '%s' "$__value"
}

# ensure LABEL DESCRIBE-CMD... -- CREATE-CMD...
# Describe the resource; create it only when the describe fails. A second run
# over existing resources therefore only describes.
ensure() {
    local label=$1
    shift
    local -a describe=()
    while [[ $# -gt 0 && $1 != "--" ]]; do
        describe+=("$1")
        shift
    done
    [[ $# -gt 0 ]] || die "ensure $label: missing -- before the create command"
    shift
    if [[ $DRY_RUN == 1 ]]; then
        printf '# %s: describe, create only if missing\n' "$label"
        print_command "${describe[@]}"
        print_command "$@"
        return 0
    fi
    if "${describe[@]}" >/dev/null 2>&1; then
        log "ok   $label"
        return 0
    fi
    log "new  $label"
    run_retry "$@"
}

# upsert LABEL DESCRIBE-CMD... -- CREATE-CMD... -- UPDATE-CMD...
# For resources defined by a file (log-based metrics): create it when the
# describe fails, else update it to the file. A second run over the same files
# sets the same configuration again, which changes nothing.
upsert() {
    local label=$1
    shift
    local -a describe=() create=()
    while [[ $# -gt 0 && $1 != "--" ]]; do
        describe+=("$1")
        shift
    done
    [[ $# -gt 0 ]] || die "upsert $label: missing -- before the create command"
    shift
    while [[ $# -gt 0 && $1 != "--" ]]; do
        create+=("$1")
        shift
    done
    [[ $# -gt 0 ]] || die "upsert $label: missing -- before the update command"
    shift
    if [[ $DRY_RUN == 1 ]]; then
        printf '# %s: describe, create if missing, else update to the file\n' "$label"
        print_command "${describe[@]}"
        print_command "${create[@]}"
        print_command "$@"
        return 0
    fi
    if "${describe[@]}" >/dev/null 2>&1; then
        log "upd  $label"
        run_retry "$@" >/dev/null
        return 0
    fi
    log "new  $label"
    run_retry "${create[@]}" >/dev/null
}

# has_binding ROLE MEMBER GET-POLICY-CMD...: the command must print
# "role<TAB>member" lines (see iam_policy_flags).
has_binding() {
    local role=$1 member=$2 line
    shift 2
    local policy
    policy=$("$@" 2>/dev/null) || return 1
    while IFS= read -r line; do
        if [[ $line == "$role"$'\t'"$member" ]]; then
            return 0
        fi
    done <<<"$policy"
    return 1
}

iam_policy_flags=(--flatten=bindings[].members '--format=value(bindings.role,bindings.members)')

# ensure_binding ROLE MEMBER GROUP RESOURCE-ARGS...
# e.g. ensure_binding roles/pubsub.publisher serviceAccount:x@p.iam... \
#          "pubsub topics" verification-events --project=p
# Reads the resource's IAM policy and adds the binding only when missing.
ensure_binding() {
    local role=$1 member=$2 group=$3
    shift 3
    local -a cmd_group extra=()
    read -r -a cmd_group <<<"$group"
    # Project policies may hold conditional bindings; without --condition the
    # CLI would prompt for one.
    [[ $group == projects ]] && extra=(--condition=None)
    local -a get=(gcloud "${cmd_group[@]}" get-iam-policy "$@" "${iam_policy_flags[@]}")
    local -a add=(gcloud "${cmd_group[@]}" add-iam-policy-binding "$@"
        --member="$member" --role="$role" "${extra[@]}")
    if [[ $DRY_RUN == 1 ]]; then
        printf '# %s for %s on %s %s: add only if missing\n' "$role" "$member" "$group" "$1"
        print_command "${get[@]}"
        print_command "${add[@]}"
        return 0
    fi
    if has_binding "$role" "$member" "${get[@]}"; then
        log "ok   $role for $member on $group $1"
        return 0
    fi
    log "new  $role for $member on $group $1"
    run_retry "${add[@]}" >/dev/null
}

# BigQuery table IAM is only reachable through the bq tool, whose JSON output
# is matched per binding object: the role and the member must sit in the same
# {...} (a binding with a condition may be missed, and is then added again,
# which changes nothing).
ensure_bq_binding() {
    local role=$1 member=$2 table=$3
    local -a get=(bq --headless --project_id="$PROJECT_ID" get-iam-policy --format=json "$table")
    local -a add=(bq --headless --project_id="$PROJECT_ID" add-iam-policy-binding
        --member="$member" --role="$role" "$table")
    if [[ $DRY_RUN == 1 ]]; then
        printf '# %s for %s on table %s: add only if missing\n' "$role" "$member" "$table"
        print_command "${get[@]}"
        print_command "${add[@]}"
        return 0
    fi
    local policy same_role
    policy=$("${get[@]}" 2>/dev/null) || policy=""
    same_role=$(tr '{' '\n' <<<"$policy" | grep -F "\"$role\"") || same_role=""
    if grep -qF "\"$member\"" <<<"$same_role"; then
        log "ok   $role for $member on table $table"
        return 0
    fi
    log "new  $role for $member on table $table"
    run_retry "${add[@]}" >/dev/null
}

# Parse the options both scripts share. Sets ARG_PROJECT_ID, ARG_REGION,
# DRY_RUN, ENV_FILE and the array POSITIONAL.
parse_common_args() {
    POSITIONAL=()
    while [[ $# -gt 0 ]]; do
        case $1 in
            --project) ARG_PROJECT_ID=${2:?--project needs a value}; shift 2 ;;
            --project=*) ARG_PROJECT_ID=${1#*=}; shift ;;
            --region) ARG_REGION=${2:?--region needs a value}; shift 2 ;;
            --region=*) ARG_REGION=${1#*=}; shift ;;
            --env-file) ENV_FILE=${2:?--env-file needs a value}; shift 2 ;;
            --env-file=*) ENV_FILE=${1#*=}; shift ;;
            --dry-run) DRY_RUN=1; shift ;;
            -h | --help) usage; exit 0 ;;
            -*) usage >&2; die "unknown option $1" ;;
            *) POSITIONAL+=("$1"); shift ;;
        esac
    done
}

# The env file holds the operator's settings (see docs/DEPLOY.md); options
# given on the command line win over it, and it wins over the environment.
load_settings() {
    if [[ -n ${ENV_FILE:-} ]]; then
        [[ -f $ENV_FILE ]] || die "env file $ENV_FILE not found"
        # shellcheck disable=SC1090
        source "$ENV_FILE"
    fi
    PROJECT_ID=${ARG_PROJECT_ID:-${PROJECT_ID:-}}
    REGION=${ARG_REGION:-${REGION:-}}
    [[ -n $PROJECT_ID ]] || die "no project: pass --project PROJECT_ID or set PROJECT_ID"
    [[ -n $REGION ]] || die "no region: pass --region REGION or set REGION"
}

require_gcloud() {
    [[ $DRY_RUN == 1 ]] && return 0
    command -v gcloud >/dev/null || die "gcloud not found on PATH (install the Google Cloud CLI)"
}
