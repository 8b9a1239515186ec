#!/bin/bash
# Check the bash completion of momctl and momd: complete a few command lines as
# bash would and compare. Usage: check-completion.bash [COMPLETIONS_DIR]
# (default: the installed /usr/share/bash-completion/completions). Needs bash-completion.
set -u
dir=${1:-/usr/share/bash-completion/completions}
source /usr/share/bash-completion/bash_completion || { echo "check-completion: no bash-completion" >&2; exit 2; }
source "$dir/momctl" && source "$dir/momd" || exit 2

failed=0
expect() {  # FUNCTION "EXPECTED WORDS" WORD...
    local func=$1 want=$2; shift 2
    COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
    "$func" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    local got word
    got=" $(printf '%s\n' "${COMPREPLY[@]}" | sort | xargs) "
    for word in $want; do  # at least these: momctl may gain commands
        case $got in *" $word "*) ;; *) echo "check-completion: '$*': got '$got', want '$want'" >&2; failed=1 ;; esac
    done
}
expect _momctl "ping policy" momctl p
expect _momctl "guests health ping policy stats verbosity" momctl ""
expect _momctl "check delete eval get list reset run sample-snapshots set set-named" momctl policy ""
expect _momctl "set set-named" momctl --socket /run/mom/mom.sock policy se
expect _momctl "debug" momctl verbosity d
expect _momctl "health" momctl he
expect _momd "--check" momd --ch
expect _momd "warn" momd -v w
[ $failed = 0 ] && echo "check-completion: OK"
exit $failed
