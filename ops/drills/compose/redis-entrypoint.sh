#!/bin/sh
# The official redis image's docker-entrypoint.sh, for the Debian stand-in: an option or a *.conf as the first
# argument means redis-server; a redis-server command started as root chowns what it finds in /data to
# redis and drops to that user (setpriv here, su-exec there); any other command runs as it is, as its user.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
	find . \! -user redis -exec chown redis '{}' +
	exec setpriv --reuid=999 --regid=999 --clear-groups "$0" "$@"
fi

um="$(umask)"
if [ "$um" = '0022' ]; then
	umask 0077
fi

exec "$@"
