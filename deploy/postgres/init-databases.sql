-- Run once by the postgres image on an empty data directory (docker-entrypoint-initdb.d).
-- One database per component: each owns its data and nothing joins across them.
-- Names match the path of NRM_<C>_DATABASE_URL in docker-compose.yml.
CREATE DATABASE gateway;
CREATE DATABASE intake;
CREATE DATABASE referral;
CREATE DATABASE fund;
CREATE DATABASE notify;
