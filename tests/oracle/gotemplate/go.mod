module mfc/oracle/gotemplate

go 1.23
