# Debezium's Connect image plus the platform's own transforms (OversizedValueGuard), built from
# the same Maven module `make install` builds for the local stack.
FROM maven:3.9.11-eclipse-temurin-17 AS transforms
COPY include/stack/jars /src
RUN mvn -B -q -f /src/pom.xml -pl connect-transforms -am -Dstack.dir=/out package

FROM quay.io/debezium/connect:3.6.1.Final
COPY --from=transforms /out/jars/connect-plugins/cdc-connect-transforms /kafka/connect/cdc-connect-transforms
