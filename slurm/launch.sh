#!/usr/bin/env bash
# Shared SLURM launch logic for slurm/train.sh and slurm/label_corpus.sh:
#   launch.sh batch SCRIPT [ARGS...]                  in the batch job: environment, input checks, srun, signals
#   launch.sh node [--print-command] SCRIPT [ARGS...]  on every node (srun): execs this node's `accelerate launch`
#   launch.sh gpus                                     on every node (srun): prints "NODE GPUS"
#   launch.sh doctor [SCRIPT ARGS...]                  slurm/doctor.sh: python -m weibolabel.doctor, in a job's setup
# How it works (modes, variables, accelerate options, CPU runs, signals): docs/cluster.md, section 10.
set -euo pipefail

log() {
    echo "[launch.sh $(date '+%F %T')] $*"
}

die() {
    echo "[launch.sh] error: $*" >&2
    exit 2
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=${REPO_DIR:-${SLURM_SUBMIT_DIR:-$(dirname "$script_dir")}}
# gloo_cpu_command: the CPU multi-process launch line, shared with the workstation launcher.
# shellcheck source=scripts/launch.sh
source "$(dirname "$script_dir")/scripts/launch.sh"

# First host of a SLURM node list ("gpu[01-04,07],cpu3" -> "gpu01").
first_host() {
    local list=$1 hosts
    if command -v scontrol >/dev/null 2>&1 &&
        hosts=$(scontrol show hostnames "$list" 2>/dev/null) && [[ -n $hosts ]]; then
        echo "${hosts%%$'\n'*}"
        return
    fi
    # Fallback without scontrol: first entry, first value of its first range.
    local first=${list%%,*}
    if [[ $list == *\[* && ${list%%\[*} != *,* ]]; then
        local prefix=${list%%\[*} inside=${list#*\[}
        inside=${inside%%\]*}
        local range=${inside%%,*}
        local suffix=${list#*\]}
        suffix=${suffix%%,*}
        first="$prefix${range%%-*}$suffix"
    fi
    echo "$first"
}

# CUDA_VISIBLE_DEVICES="0,1" -> 2.  CUDA stops at the first entry that is not
# a device (index or GPU-/MIG- UUID); SLURM writes "NoDevFiles" when a GRES has
# no device files; "" and "-1" hide every GPU.
count_visible_devices() {
    local entry n=0
    local -a entries
    IFS=, read -r -a entries <<<"$1"
    for entry in "${entries[@]}"; do
        [[ $entry =~ ^[[:space:]]*([0-9]+|GPU-[[:alnum:]-]+|MIG-[[:alnum:]/-]+)[[:space:]]*$ ]] || break
        n=$((n + 1))
    done
    echo "$n"
}

# "COUNT SOURCE": the GPUs this node's processes can use, and who said so.
# With --gres=gpu:N (or --gpus-per-node) SLURM sets SLURM_GPUS_ON_NODE
# (SLURM_GPUS_PER_NODE) and restricts CUDA_VISIBLE_DEVICES to the allocated
# GPUs.  A whole-node allocation without GRES sets none of them, and every GPU
# of the node is free to use: count them with nvidia-smi.  A CUDA_VISIBLE_DEVICES
# set by hand still wins over nvidia-smi, which lists every GPU of the node
# whatever CUDA_VISIBLE_DEVICES hides, while CUDA shows the processes only these.
count_gpus() {
    if [[ ${DEVICE:-} == cpu ]]; then
        echo "0 DEVICE=cpu" # the CPU on purpose, GPUs or not
    elif [[ -n ${GPUS_PER_NODE:-} ]]; then
        echo "$GPUS_PER_NODE GPUS_PER_NODE"
    elif [[ -n ${SLURM_GPUS_ON_NODE:-} ]]; then
        echo "$SLURM_GPUS_ON_NODE SLURM_GPUS_ON_NODE"
    elif [[ -n ${SLURM_GPUS_PER_NODE:-} ]]; then
        echo "${SLURM_GPUS_PER_NODE##*:} SLURM_GPUS_PER_NODE" # "a100:4" -> 4
    elif [[ -n ${CUDA_VISIBLE_DEVICES+set} ]]; then
        echo "$(count_visible_devices "$CUDA_VISIBLE_DEVICES") CUDA_VISIBLE_DEVICES"
    elif command -v nvidia-smi >/dev/null 2>&1; then
        # One "GPU i: <name> (UUID: ...)" line per GPU; a node whose driver is
        # missing prints an error and counts 0.
        echo "$(nvidia-smi -L 2>/dev/null | grep -c '^GPU [0-9]' || true) nvidia-smi"
    else
        echo "0 no-GPU-found"
    fi
}

# GPUs on this node (0 when none).
gpus_on_node() {
    local n source
    read -r n source <<<"$(count_gpus)"
    [[ $n =~ ^[0-9]+$ ]] || die "cannot read a GPU count from '$n' ($source)"
    echo "$n"
}

# Processes on a node with GPUS GPUs: PROCS_PER_NODE, or one per GPU (2 on CPU).
# More processes than GPUs would put two on one GPU, which NCCL refuses
# ("Duplicate GPU detected") only once the job has started.
procs_per_node() {
    local gpus=$1 procs
    if ((gpus > 0)); then
        procs=${PROCS_PER_NODE:-$gpus}
    else
        procs=${PROCS_PER_NODE:-2}
    fi
    [[ $procs =~ ^[1-9][0-9]*$ ]] || die "PROCS_PER_NODE must be a positive integer, not '$procs'"
    if ((gpus > 0 && procs > gpus)); then
        die "PROCS_PER_NODE=$procs but node $(node_name) has $gpus GPU(s) ($(count_gpus | cut -d' ' -f2-)):" \
            "two processes on one GPU fail in NCCL ('Duplicate GPU detected'). Set PROCS_PER_NODE=$gpus or less" \
            "(or unset it: one process per GPU), or ask for $procs GPUs per node (--gres=gpu:$procs)."
    fi
    echo "$procs"
}

node_name() {
    echo "${SLURMD_NODENAME:-$(hostname -s)}"
}

# Lines "NODE GPUS", one per node of the allocation (`launch.sh gpus` under
# srun): every node must start the same number of processes, or the rendezvous
# waits for processes that never come, until the time limit.
check_same_gpus() {
    local counts=$1 min max listing
    min=$(awk '{print $2}' <<<"$counts" | sort -n | head -n 1)
    max=$(awk '{print $2}' <<<"$counts" | sort -n | tail -n 1)
    [[ $min =~ ^[0-9]+$ && $max =~ ^[0-9]+$ ]] || die "cannot read the nodes' GPU counts: $counts"
    ((min == max)) && return 0
    listing=$(sort <<<"$counts" | awk '{printf "%s%s: %s", sep, $1, $2; sep = ", "}')
    if ((min == 0)); then
        die "some nodes have GPUs and some have none ($listing): one job cannot mix GPU and CPU processes." \
            "Ask for GPUs on every node (--gres=gpu:N) or for a partition of identical nodes."
    fi
    [[ -n ${PROCS_PER_NODE:-} ]] && ((PROCS_PER_NODE <= min)) && return 0
    die "the nodes have different numbers of GPUs ($listing): every node must start the same number of" \
        "processes, or the rendezvous waits forever. Set PROCS_PER_NODE=$min (the smallest count), or ask for" \
        "the same GPUs on every node (--gres=gpu:N, or a partition of identical nodes)."
}

# The accelerate command for this node, into the global array CMD.
build_command() {
    local script=$1
    shift
    local nnodes=${SLURM_NNODES:-${SLURM_JOB_NUM_NODES:-1}}
    local rank=${SLURM_NODEID:-${SLURM_PROCID:-}}
    if [[ -z $rank ]]; then
        ((nnodes == 1)) || die "SLURM_NODEID is not set: run this through srun"
        rank=0
    fi
    ((rank < nnodes)) || die "node id $rank out of range for $nnodes nodes"

    local gpus procs total cpus threads
    gpus=$(gpus_on_node)
    procs=$(procs_per_node "$gpus")
    total=$((nnodes * procs))
    cpus=${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-$(nproc)}}
    threads=$((cpus / procs))
    ((threads >= 1)) || threads=1

    local main_ip=127.0.0.1
    if ((nnodes > 1)); then
        [[ -n ${SLURM_JOB_NODELIST:-${SLURM_NODELIST:-}} ]] || die "SLURM_JOB_NODELIST is not set"
        main_ip=$(first_host "${SLURM_JOB_NODELIST:-$SLURM_NODELIST}")
    fi
    local port=${MAIN_PROCESS_PORT:-$((20000 + ${SLURM_JOB_ID:-0} % 10000))}

    local config=$REPO_DIR/accelerate_config.yaml
    if ((gpus == 0 && total > 1)); then
        gloo_cpu_command # N gloo CPU processes through torchrun (scripts/launch.sh)
    elif ((gpus == 0)); then
        # The repository's config is for GPUs (MULTI_GPU, bf16): not on CPU.
        CMD=(accelerate launch --mixed_precision "${MIXED_PRECISION:-no}" --dynamo_backend no --cpu)
    else
        CMD=(accelerate launch)
        if [[ -f $config ]]; then
            CMD+=(--config_file "$config")
        else
            CMD+=(--dynamo_backend no)
        fi
        # By the node's GPUs: bf16 only where native (compute capability >= 8.0), else fp16.
        CMD+=(--mixed_precision "${MIXED_PRECISION:-$(python -m weibolabel.run.precision || echo fp16)}")
        ((total == 1)) || CMD+=(--multi_gpu)
    fi
    CMD+=(
        --num_machines "$nnodes"
        --machine_rank "$rank"
        --main_process_ip "$main_ip"
        --main_process_port "$port"
        --num_processes "$total"
        --num_cpu_threads_per_process "$threads"
        "$script" "$@"
    )
}

node_main() {
    local print=0
    if [[ ${1:-} == --print-command ]]; then
        print=1
        shift
    fi
    [[ $# -ge 1 ]] || die "usage: launch.sh node [--print-command] SCRIPT [ARGS...]"
    local script=$1
    shift
    [[ $script == /* ]] || script=$REPO_DIR/$script
    build_command "$script" "$@"
    if ((print)); then
        printf '%q ' "${CMD[@]}"
        echo
        return 0
    fi
    [[ -f $script ]] || die "no such script: $script"
    log "node ${SLURMD_NODENAME:-$(hostname -s)} rank ${SLURM_NODEID:-0}/${SLURM_NNODES:-1}: ${CMD[*]}"
    exec "${CMD[@]}"
}

activate_env() {
    if [[ -n ${VENV:-} ]]; then
        [[ -f $VENV/bin/activate ]] || die "VENV=$VENV has no bin/activate"
        # shellcheck disable=SC1091
        source "$VENV/bin/activate"
    elif [[ -n ${CONDA_ENV:-} ]]; then
        command -v conda >/dev/null 2>&1 || die "CONDA_ENV is set but conda is not on PATH"
        set +u # conda's activation scripts read unset variables
        eval "$(conda shell.bash hook)"
        conda activate "$CONDA_ENV"
        set -u
    elif [[ -f $REPO_DIR/.venv/bin/activate ]]; then
        # shellcheck disable=SC1091
        source "$REPO_DIR/.venv/bin/activate"
    fi
    command -v accelerate >/dev/null 2>&1 ||
        die "accelerate not found: set VENV=/path/to/.venv or CONDA_ENV=name"
}

STOP_SIGNAL=""
SRUN_PID=""

on_signal() {
    STOP_SIGNAL=$1
    [[ -n $SRUN_PID ]] || return 0
    if [[ $1 == USR1 ]]; then
        # `--signal=B:USR1` reaches only this shell: pass SIGTERM on to the
        # job step.  Not with `kill -TERM $SRUN_PID`: srun answers SIGTERM by
        # killing the step at once; `scancel --signal` delivers SIGTERM to the
        # step's processes and leaves the step running until they exit.
        log "caught SIGUSR1 (time limit close): asking the job step to stop (SIGTERM) and save its progress" \
            "(accelerate's launcher may then exit 1 with a torch SignalException traceback: expected)"
        scancel --signal=TERM "$SLURM_JOB_ID" || true
    else
        # Pre-emption, `scontrol requeue`, `scancel`, time limit: SLURM sends
        # SIGTERM to every process of the job itself (and SIGKILL KillWait
        # seconds later).  Calling scancel now would block: the job is
        # completing and slurmctld answers "try again later" for ~30 s.
        log "caught SIG$1: SLURM is stopping the job; waiting for the job step to save and exit" \
            "(accelerate's launcher may then exit 1 with a torch SignalException traceback: expected)"
    fi
}

batch_main() {
    [[ $# -ge 1 ]] || die "usage: launch.sh batch SCRIPT [ARGS...]"
    [[ -n ${SLURM_JOB_ID:-} ]] || die "not inside a SLURM job: submit with sbatch"
    local script=$1
    shift

    # The settings both submit scripts share (Python environment, processes per node): edit them there.
    # shellcheck source=slurm/env.sh
    source "$script_dir/env.sh"
    activate_env
    device_arguments || exit # DEVICE=cpu: the job gets --device cpu (scripts/launch.sh)
    set -- "$@" "${DEVICE_ARGS[@]}"
    export_job_environment # offline: compute nodes have no internet (scripts/launch.sh)
    # This checkout's package, whichever copy the environment has installed.
    export PYTHONPATH="$REPO_DIR/lib${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONUNBUFFERED=1

    local nnodes=${SLURM_NNODES:-1}
    local gpus
    gpus=$(count_gpus)
    log "job ${SLURM_JOB_NAME:-?} ${SLURM_JOB_ID} SLURM_RESTART_COUNT=${SLURM_RESTART_COUNT:-0}" \
        "nodes=${SLURM_JOB_NODELIST:-?} ($nnodes) gpus/node=${gpus% *} (${gpus#* })" \
        "cpus/task=${SLURM_CPUS_PER_TASK:-?} python=$(command -v python)"
    log "command: $script $*"

    local srun_args=(--nodes="$nnodes" --ntasks="$nnodes" --ntasks-per-node=1 --kill-on-bad-exit=1)
    # SLURM 22.05's srun does not inherit --cpus-per-task from sbatch.
    [[ -n ${SLURM_CPUS_PER_TASK:-} ]] && srun_args+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
    if ((nnodes > 1)); then
        # Counted on the nodes themselves: the batch shell sees only its own.
        local counts
        counts=$(srun "${srun_args[@]}" bash "$script_dir/launch.sh" gpus) ||
            die "could not count the GPUs of every node (srun failed): $counts"
        log "GPUs per node: $(tr '\n' ' ' <<<"$counts")"
        check_same_gpus "$counts"
    fi

    # The job's own input checks, in this one process, before srun starts the job: a wrong path or a bad label
    # costs seconds, and the log ends with the job's one-line message (exit status 2), not a launcher's traceback.
    local script_path=$script
    [[ $script_path == /* ]] || script_path=$REPO_DIR/$script_path
    # What the job will use on this node and why (GPUs, driver, precision, transport, model, memory, output): the
    # doctor's lines open every job's log. Its problems stop the job in the preflight below, with the job's message.
    python -m weibolabel.doctor "$script_path" "$@" || true
    python -m weibolabel.run.preflight "$script_path" "$@" || exit

    trap 'on_signal USR1' USR1
    trap 'on_signal TERM' TERM
    srun "${srun_args[@]}" bash "$script_dir/launch.sh" node "$script" "$@" &
    SRUN_PID=$!
    local rc
    while :; do
        if wait "$SRUN_PID"; then rc=0; else rc=$?; fi
        # wait returns early (>128) when a trapped signal arrives: wait again.
        kill -0 "$SRUN_PID" 2>/dev/null || break
    done
    SRUN_PID=""
    log "job step finished with exit code $rc"

    if [[ $STOP_SIGNAL == USR1 && $rc -eq 0 ]]; then
        log "the job finished before it had to stop: not requeueing"
    elif [[ $STOP_SIGNAL == USR1 ]]; then
        log "time limit close: requeueing job $SLURM_JOB_ID; the next run resumes"
        if scontrol requeue "$SLURM_JOB_ID"; then
            exit 0
        fi
        log "requeue failed (job not requeueable?): resubmit the same command to resume"
        ((rc != 0)) || rc=1
    elif [[ $STOP_SIGNAL == TERM ]]; then
        log "stopped by SIGTERM (pre-emption, requeue or scancel)"
    fi
    exit "$rc"
}

# `launch.sh doctor [SCRIPT ARGS...]` (slurm/doctor.sh): the doctor's report in a job's environment.
doctor_main() {
    # shellcheck source=slurm/env.sh
    source "$script_dir/env.sh"
    activate_env
    device_arguments || exit
    export_job_environment
    export PYTHONPATH="$REPO_DIR/lib${PYTHONPATH:+:$PYTHONPATH}"
    if [[ $# -ge 1 ]]; then
        local script=$1
        shift
        [[ $script == /* ]] || script=$REPO_DIR/$script
        exec python -m weibolabel.doctor "$script" "$@" "${DEVICE_ARGS[@]}"
    fi
    exec python -m weibolabel.doctor "${DEVICE_ARGS[@]}"
}

# Sourced (the tests call the functions above), nothing runs.
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

case ${1:-} in
    batch)
        shift
        batch_main "$@"
        ;;
    node)
        shift
        node_main "$@"
        ;;
    gpus)
        echo "$(node_name) $(gpus_on_node)"
        ;;
    doctor)
        shift
        doctor_main "$@"
        ;;
    *)
        die "usage: launch.sh batch|node [--print-command] SCRIPT [ARGS...] | gpus | doctor [SCRIPT ARGS...]"
        ;;
esac
