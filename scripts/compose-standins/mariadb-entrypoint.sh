#!/bin/sh
# First start on an empty volume: initialise, create the database and the user from the
# environment (as the official image does), then serve on the network.
set -eu
datadir=/var/lib/mysql
install -d -o mysql -g mysql /run/mysqld
chown mysql:mysql "$datadir"
if [ ! -d "$datadir/mysql" ]; then
  : "${MARIADB_DATABASE:?}" "${MARIADB_USER:?}" "${MARIADB_PASSWORD:?}"
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db >/dev/null
  mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket=/run/mysqld/init.sock &
  pid=$!
  until mariadb --socket=/run/mysqld/init.sock -e 'SELECT 1' >/dev/null 2>&1; do sleep 0.2; done
  # Root keeps only unix-socket login inside the container (a random password, never shown, otherwise).
  esc=$(printf '%s' "$MARIADB_PASSWORD" | sed -e 's/\\/\\\\/g' -e "s/'/''/g")
  mariadb --socket=/run/mysqld/init.sock <<SQL
DELETE FROM mysql.global_priv WHERE User = '';
CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER '$MARIADB_USER'@'%' IDENTIFIED BY '$esc';
GRANT ALL ON \`$MARIADB_DATABASE\`.* TO '$MARIADB_USER'@'%';
FLUSH PRIVILEGES;
SQL
  kill "$pid"
  wait "$pid" || true
fi
exec "$@" --user=mysql --datadir="$datadir" --bind-address=0.0.0.0 --port=3306 --skip-log-bin
