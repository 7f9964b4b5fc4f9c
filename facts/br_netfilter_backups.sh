# shellcheck shell=sh
# BrNetfilterBackups (facts/br_netfilter.py): each record in the backup directory, tagged
# "record=<name>" and followed by its text (describe.sh's lines), then every copy described by
# describe.sh. Retired records, links and other entries are left out.
#
# br_netfilter_backups.sh DESCRIBE LINE_REGEX BACKUP_DIR RECORD_SUFFIX
# (DESCRIBE: the text of describe.sh)

describe=$1 regex=$2 backup_dir=$3 suffix=$4
shift 4
[ -d "$backup_dir" ] || exit 0
for f in "$backup_dir"/*; do
    if [ ! -f "$f" ] || [ -L "$f" ]; then
        continue
    fi
    case ${f##*/} in
        *"$suffix")
            printf 'record=%s\n' "${f##*/}"
            cat -- "$f"
            ;;
        *"$suffix".~*~) ;;
        *) set -- "$@" "$f" ;;
    esac
done
# The copies in one describe.sh.
[ $# -eq 0 ] || sh -c "$describe" describe.sh "$regex" "$@"
