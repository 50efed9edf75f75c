# Stand-in for mariadb:10.11: Debian bookworm's MariaDB 10.11 with an entrypoint that does
# what docker-compose.yml asks of the official image (MARIADB_DATABASE, MARIADB_USER,
# MARIADB_PASSWORD, MARIADB_RANDOM_ROOT_PASSWORD on the first start; healthcheck.sh
# --connect --innodb_initialized).
ARG BASE
FROM ${BASE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/lib/mysql/* \
 && install -d -o mysql -g mysql /run/mysqld /var/lib/mysql
COPY mariadb-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY mariadb-healthcheck.sh /usr/local/bin/healthcheck.sh
VOLUME /var/lib/mysql
EXPOSE 3306
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["mariadbd"]
