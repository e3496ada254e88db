DROP TABLE certificates;
DROP TABLE attendances;
DROP TABLE event_participants;
DROP TABLE events;
DROP FUNCTION attendance_refuse_change();
