# shellcheck shell=sh
# A record written once (operations/records.py): what COMMAND prints, to RECORD, unless a record
# is there already. Written whole under a hidden temporary name beside it, on disk, then
# hard-linked: the record appears complete or not at all, and ln never replaces one. A record
# that is there stands; the script then succeeds when EXISTING_OK is "yes", else fails.
#
# written_once.sh EXISTING_OK RECORD COMMAND [ARG...]

existing_ok=$1 record=$2
shift 2
dir=${record%/*}
dir=${dir:-/}
mkdir -p -- "$dir" && t=$(mktemp "$dir/.${record##*/}.XXXXXX") || exit
"$@" >"$t" && sync -- "$t" && {
    ln -- "$t" "$record" 2>/dev/null || { [ "$existing_ok" = yes ] && [ -e "$record" ]; }
}
s=$?
rm -f -- "$t"
exit $s
