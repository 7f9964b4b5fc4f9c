# shellcheck shell=sh
# NodePreflight (facts/preflight.py): what the migration needs from a node, one "key=value" a
# line, then getaddrinfo's answers for the API server's name, as they are.
#
# node_preflight.sh SERVICE_HOST SERVICE_PORT CGROUP_ROOT CONF_DIR [BACKUP_DIR...]
# (an empty CONF_DIR is not checked)

service_host=$1 service_port=$2 cgroup_root=$3 conf_dir=$4
shift 4

echo "uid=$(id -u)"
sudo -n true 2>/dev/null && echo sudo=yes
[ -d /run/systemd/system ] && echo systemd=yes
echo "kernel=$(uname -r)"
echo "cgroup_fs=$(stat -fc %T -- "$cgroup_root" 2>/dev/null)"
# bash's /dev/tcp: the name and the port are bash's own positional parameters.
# shellcheck disable=SC2016
timeout 3 bash -c '<"/dev/tcp/$1/$2"' bash "$service_host" "$service_port" >/dev/null 2>&1 &&
    echo reachable=yes
if [ -n "$conf_dir" ] && [ -d "$conf_dir" ]; then
    echo conf_dir=yes
    echo "conf_kib=$(du -skL -- "$conf_dir" 2>/dev/null)"
fi

if [ $# -gt 0 ]; then
    n=$#
    # Each backup directory at its nearest existing ancestor (it may not exist yet), by
    # parameter expansion (dirname would cost a process a level).
    for d in "$@"; do
        shift
        while [ ! -e "$d" ]; do
            case $d in
                */*) d=${d%/*}; d=${d:-/} ;;
                *) d=. ;;
            esac
        done
        set -- "$@" "$d"
    done
    # One df for all of them, and one read of the mount table for their mounts' options:
    # "room=<index>|<free KiB>|<options>", by position (the paths may hold anything), with the
    # options of the last mount at its mount point (the one seen there; the mount table escapes
    # space, tab, newline and backslash). Fewer lines than paths (a df that failed for one)
    # would shift the rest onto the wrong paths: then every path is reported unmeasured.
    df -k --output=avail,target -- "$@" 2>/dev/null | awk -v n="$n" '
        NR == FNR {
            m = $2; gsub(/\\040/, " ", m); gsub(/\\011/, "\t", m); gsub(/\\012/, "\n", m); gsub(/\\134/, "\\\\", m)
            options[m] = $4; next
        }
        FNR > 1 { t = $0; sub(/^ *[^ ]+ /, "", t); free[c + 0] = $1; at[c++] = t }
        END { for (i = 0; i < n; i++) print "room=" i "|" (c == n ? free[i] "|" options[at[i]] : "|") }
    ' /proc/self/mounts -
fi

# getaddrinfo's answers come last, as they are (each address once a socket type).
echo ahosts
getent ahosts "$service_host" 2>/dev/null
true
