module mfc/oracle/gojson

go 1.23
