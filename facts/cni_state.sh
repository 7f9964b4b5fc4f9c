# shellcheck shell=sh
# CniState (facts/cni.py): the CNI configurations in the CNI and backup directories, the retired
# records, a pending kubelet restart, then the record's bytes.
#
# cni_state.sh CONF_DIR BACKUP_DIR RECORD RESTART_PENDING RETIRED_INFIX HEXED PLAIN PLUGIN
#              RENAMED_SUFFIX SUFFIX...
# (the constants come from facts/cni.py, so that each is written once)
#
# One line an entry: "<conf|backup> <file|symlink> <sha256|-> <name> <target|->", names and
# targets encoded by e(): as they are when made only of PLAIN's characters, else HEXED and their
# bytes in hex (pyinfra hands the output over in lines, as UTF-8). The regular files' modes and
# whether PLUGIN is in them follow each directory's entries, in their order ("modes ...",
# "cilium <count> ..."): one stat and one grep a directory rather than one a file. What does not
# read as a regular file carries its mode on its own line, and is not read (a symlink to a FIFO
# would block).

conf_dir=$1 backup_dir=$2 record=$3 restart_pending=$4 retired_infix=$5
hexed=$6 plain=$7 plugin=$8 renamed_suffix=$9
shift 9
suffixes=$*

e() {
    # PLAIN is a list of characters, one bracket expression: unquoted on purpose.
    case $1 in
        -* | *[!$plain]*) v=$hexed$(printf %s "$1" | od -An -v -tx1 | tr -d ' \n') ;;
        *) v=$1 ;;
    esac
}

# Whether a name is one libcni loads (by extension, dot files too), or one Cilium's agent renamed.
is_config() {
    for s in $suffixes; do
        case $1 in *"$s" | *"$s$renamed_suffix") return 0 ;; esac
    done
    return 1
}

list() {
    [ -d "$2" ] || return 0
    w=$1 d=$2
    shift 2
    for f in "$d"/* "$d"/.*; do
        case ${f##*/} in . | ..) continue ;; esac
        is_config "${f##*/}" || continue
        if [ -L "$f" ]; then
            t=symlink
            # The dot keeps a target's trailing newlines from the command substitution.
            l=$(readlink -n -- "$f" && echo .) || exit 1
            l=${l%.}
            [ -n "$l" ] || exit 1
            e "$l"
            l=$v
        elif [ -f "$f" ]; then
            t=file l=-
        else
            continue
        fi
        e "${f##*/}"
        if [ -f "$f" ]; then
            s=$(sha256sum <"$f") || exit 1
            echo "$w $t ${s%% *} $v $l"
            set -- "$@" "$f"
        else
            m=$(stat -c %a -- "$f") || exit 1
            echo "$w $t - $v $l $m"
        fi
    done
    [ $# -gt 0 ] || return 0
    m=$(stat -c %a -- "$@") || exit 1
    k=$(grep -hcs -- "\"$plugin\"" "$@")
    [ $? -lt 2 ] || exit 1
    # One line each, the words of stat's and grep's lines in the files' order.
    # shellcheck disable=SC2086
    echo modes $m
    # shellcheck disable=SC2086
    echo cilium $k
}

list conf "$conf_dir"
list backup "$backup_dir"
for f in "$record$retired_infix"*'~'; do
    [ -f "$f" ] && e "${f##*/}" && echo "retired $v"
done
[ -e "$restart_pending" ] && echo restart_pending
# The record comes last: every line after "record" is its bytes, as od prints them.
if [ -f "$record" ]; then
    echo record
    od -An -v -tx1 <"$record"
fi
true
