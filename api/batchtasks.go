package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/batchtask"
	"github.com/labstack/echo/v4"
)

// IoTDA's batch tasks and their files.

// Codes not in the reference; chosen in IoTDA's numbering and documented
// in the README.
const (
	codeBatchTaskNotFound = "IOTDA.016000"
	codeBatchTaskState    = "IOTDA.016001" // deleting a running task, stopping an ended one
)

// BatchTasks keeps and runs batch tasks (*batchtask.Service satisfies
// it).
type BatchTasks interface {
	UploadFile(ctx context.Context, project, name string, content []byte) (*batchtask.File, error)
	Files(ctx context.Context, project string) ([]batchtask.File, error)
	DeleteFile(ctx context.Context, project, id string) error
	Create(ctx context.Context, nt batchtask.NewTask) (*batchtask.Task, error)
	List(ctx context.Context, project string, f batchtask.Filter, pg batchtask.Page) ([]batchtask.Task, int, string, error)
	Items(ctx context.Context, project, id string, f batchtask.ItemFilter, pg batchtask.Page) (*batchtask.Task, []batchtask.Item, int, string, error)
	Stop(ctx context.Context, project, id string) error
	Delete(ctx context.Context, project, id string) error
	Retry(ctx context.Context, project, id string, targets []string) ([]batchtask.RetryResult, error)
}

func (s *Server) batchTaskRoutes(g *echo.Group) {
	if s.tasks == nil {
		return
	}
	g.POST("/batchtask-files", s.uploadBatchFile)
	g.GET("/batchtask-files", s.listBatchFiles)
	g.DELETE("/batchtask-files/:file_id", s.deleteBatchFile)
	g.POST("/batchtasks", s.createBatchTask)
	g.GET("/batchtasks", s.listBatchTasks)
	g.GET("/batchtasks/:task_id", s.showBatchTask)
	g.DELETE("/batchtasks/:task_id", s.deleteBatchTask)
	g.POST("/batchtasks/:task_id/stop", s.stopBatchTask)
	g.POST("/batchtasks/:task_id/retry", s.retryBatchTask)
}

// DescribeItemError is how a batch task item's failure is reported: the
// code and message the API answers for the same error on its own
// request (a bad row of createDevices fails as AddDevice would).
func DescribeItemError(err error) batchtask.ItemError {
	var ff *registry.FirmwareFailedError
	if errors.As(err, &ff) {
		return batchtask.ItemError{Code: codeFirmwareFailed, Msg: ff.Error()}
	}
	if ae := fromRegistry(err); ae != nil {
		return batchtask.ItemError{Code: ae.Code, Msg: ae.Msg}
	}
	return batchtask.ItemError{Code: codeInternal, Msg: "Internal server error."}
}

// batchTaskError maps the service's own errors; the registry's go
// through fromRegistry in the error handler.
func batchTaskError(err error) error {
	var nf *batchtask.NotFoundError
	switch {
	case errors.As(err, &nf):
		return &apiError{Status: http.StatusNotFound, Code: codeBatchTaskNotFound, Msg: nf.Error()}
	case errors.Is(err, batchtask.ErrActive), errors.Is(err, batchtask.ErrEnded),
		errors.Is(err, batchtask.ErrNotRetryable), errors.Is(err, batchtask.ErrNotRetrying):
		return &apiError{Status: http.StatusBadRequest, Code: codeBatchTaskState, Msg: "Operation not allowed. " + err.Error()}
	}
	return err
}

type batchFileView struct {
	FileID     string `json:"file_id"`
	FileName   string `json:"file_name"`
	UploadTime string `json:"upload_time"`
}

func viewBatchFile(f *batchtask.File) batchFileView {
	return batchFileView{FileID: f.ID, FileName: f.Name, UploadTime: compact(f.Uploaded)}
}

// uploadBatchFile is POST /batchtask-files: a multipart/form-data body
// whose part "file" is the xlsx (or CSV) file.
func (s *Server) uploadBatchFile(c echo.Context) error {
	body, _ := c.Get(bodyKey).([]byte)
	mt, params, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return badInput("invalid request: must be multipart/form-data with the file in a part named \"file\"")
	}
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := r.NextPart()
		if errors.Is(err, io.EOF) {
			return badInput("invalid file: the form has no part named \"file\"")
		}
		if err != nil {
			return badInput("invalid request: the multipart body cannot be read: %v", err)
		}
		if p.FormName() != "file" {
			continue
		}
		content, err := io.ReadAll(p)
		if err != nil {
			return badInput("invalid file: cannot be read: %v", err)
		}
		f, err := s.tasks.UploadFile(c.Request().Context(), project(c), p.FileName(), content)
		if err != nil {
			return batchTaskError(err)
		}
		return c.JSON(http.StatusCreated, viewBatchFile(f))
	}
}

// listBatchFiles is GET /batchtask-files.
func (s *Server) listBatchFiles(c echo.Context) error {
	fs, err := s.tasks.Files(c.Request().Context(), project(c))
	if err != nil {
		return err
	}
	views := make([]batchFileView, 0, len(fs))
	for i := range fs {
		views = append(views, viewBatchFile(&fs[i]))
	}
	return c.JSON(http.StatusOK, map[string]any{"files": views})
}

// deleteBatchFile is DELETE /batchtask-files/{file_id}.
func (s *Server) deleteBatchFile(c echo.Context) error {
	if err := s.tasks.DeleteFile(c.Request().Context(), project(c), c.Param("file_id")); err != nil {
		return batchTaskError(err)
	}
	return c.NoContent(http.StatusNoContent)
}

// batchTaskView is IoTDA's Task.
type batchTaskView struct {
	TaskID       string           `json:"task_id"`
	TaskName     string           `json:"task_name"`
	TaskType     string           `json:"task_type"`
	Targets      []string         `json:"targets,omitempty"`
	Document     json.RawMessage  `json:"document,omitempty"`
	TaskExtInfo  json.RawMessage  `json:"task_ext_info,omitempty"`
	Status       string           `json:"status"`
	StatusDesc   string           `json:"status_desc,omitempty"`
	TaskProgress taskProgressView `json:"task_progress"`
	CreateTime   string           `json:"create_time"`
}

type taskProgressView struct {
	Total      int `json:"total"`
	Processing int `json:"processing"`
	Success    int `json:"success"`
	Fail       int `json:"fail"`
	Waitting   int `json:"waitting"`
	Stopped    int `json:"stopped"`
}

func viewBatchTask(t *batchtask.Task) batchTaskView {
	p := t.Progress
	return batchTaskView{TaskID: t.ID, TaskName: t.Name, TaskType: t.Type, Document: t.Document, TaskExtInfo: t.ExtInfo,
		Status: string(t.Status), StatusDesc: t.StatusMsg, CreateTime: compact(t.Created),
		TaskProgress: taskProgressView{Total: p.Total, Processing: p.Processing, Success: p.Success, Fail: p.Fail,
			Waitting: p.Waiting, Stopped: p.Stopped}}
}

// createBatchTask is POST /batchtasks (IoTDA's CreateBatchTask).
func (s *Server) createBatchTask(c echo.Context) error {
	var b struct {
		AppID          string          `json:"app_id"`
		TaskName       string          `json:"task_name"`
		TaskType       string          `json:"task_type"`
		Targets        []string        `json:"targets"`
		TargetsFilter  map[string]any  `json:"targets_filter"`
		Document       json.RawMessage `json:"document"`
		TaskExtInfo    json.RawMessage `json:"task_ext_info"`
		DocumentSource string          `json:"document_source"`
	}
	if err := decode(c, &b); err != nil {
		return err
	}
	if b.AppID != "" && b.AppID != project(c) {
		return badInput("invalid app_id: must be this project's id %q: iotgate has one resource space per project", project(c))
	}
	if len(b.Targets) == 0 && len(b.TargetsFilter) > 0 {
		return badInput("invalid targets_filter: not supported; give targets or document_source")
	}
	t, err := s.tasks.Create(c.Request().Context(), batchtask.NewTask{ProjectID: project(c), AppID: b.AppID, Name: b.TaskName,
		Type: b.TaskType, Targets: b.Targets, DocumentSource: b.DocumentSource, Document: b.Document, ExtInfo: b.TaskExtInfo})
	if err != nil {
		return batchTaskError(err)
	}
	v := viewBatchTask(t)
	v.Targets = b.Targets
	return c.JSON(http.StatusCreated, v)
}

// listBatchTasks is GET /batchtasks?task_type=&status= (task_type is
// required, as IoTDA has it).
func (s *Server) listBatchTasks(c echo.Context) error {
	typ := c.QueryParam("task_type")
	if typ == "" {
		return badInput("invalid task_type: is required")
	}
	pg, err := page(c)
	if err != nil {
		return err
	}
	tasks, count, marker, err := s.tasks.List(c.Request().Context(), project(c),
		batchtask.Filter{Type: typ, Status: batchtask.Status(c.QueryParam("status"))},
		batchtask.Page{Limit: pg.Limit, Marker: pg.Marker, Offset: pg.Offset})
	if err != nil {
		return batchTaskError(err)
	}
	views := make([]batchTaskView, 0, len(tasks))
	for i := range tasks {
		views = append(views, viewBatchTask(&tasks[i]))
	}
	return c.JSON(http.StatusOK, map[string]any{"batchtasks": views, "page": pageInfo{Count: int64(count), Marker: marker}})
}

type taskDetailView struct {
	Target string               `json:"target"`
	Status string               `json:"status"`
	Output string               `json:"output,omitempty"`
	Error  *batchtask.ItemError `json:"error,omitempty"`
}

// showBatchTask is GET /batchtasks/{task_id}: the task and a page of its
// items (task_details), filtered by task_detail_status or target.
func (s *Server) showBatchTask(c echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	t, items, count, marker, err := s.tasks.Items(c.Request().Context(), project(c), c.Param("task_id"),
		batchtask.ItemFilter{Status: batchtask.ItemStatus(c.QueryParam("task_detail_status")), Target: c.QueryParam("target")},
		batchtask.Page{Limit: pg.Limit, Marker: pg.Marker, Offset: pg.Offset})
	if err != nil {
		return batchTaskError(err)
	}
	details := make([]taskDetailView, 0, len(items))
	for _, it := range items {
		details = append(details, taskDetailView{Target: it.Target, Status: string(it.Status), Output: it.Output, Error: it.Error})
	}
	return c.JSON(http.StatusOK, map[string]any{"batchtask": viewBatchTask(t), "task_details": details,
		"page": pageInfo{Count: int64(count), Marker: marker}})
}

// deleteBatchTask is DELETE /batchtasks/{task_id}: an ended task only.
func (s *Server) deleteBatchTask(c echo.Context) error {
	if err := s.tasks.Delete(c.Request().Context(), project(c), c.Param("task_id")); err != nil {
		return batchTaskError(err)
	}
	return c.NoContent(http.StatusNoContent)
}

// stopBatchTask is POST /batchtasks/{task_id}/stop: the whole task (a
// body naming some targets is refused: iotgate stops whole tasks).
func (s *Server) stopBatchTask(c echo.Context) error {
	var b struct {
		Targets []string `json:"targets"`
	}
	if err := decodeOptional(c, &b); err != nil {
		return err
	}
	if len(b.Targets) > 0 {
		return badInput("invalid targets: iotgate stops a whole task; send no targets")
	}
	if err := s.tasks.Stop(c.Request().Context(), project(c), c.Param("task_id")); err != nil {
		return batchTaskError(err)
	}
	return c.JSON(http.StatusOK, map[string]any{"targets": []any{}})
}

// batchTargetResult is IoTDA's BatchTargetResult.
type batchTargetResult struct {
	Target    string `json:"target"`
	Status    string `json:"status"`
	ErrorCode string `json:"error_code,omitempty"`
	ErrorMsg  string `json:"error_msg,omitempty"`
}

// retryBatchTask is POST /batchtasks/{task_id}/retry (IoTDA's
// RetryBatchTask): the failed items of targets (at most 100), or every
// failed item with no targets, are tried again; firmwareUpgrade tasks
// only.
func (s *Server) retryBatchTask(c echo.Context) error {
	var b struct {
		Targets []string `json:"targets"`
	}
	if err := decodeOptional(c, &b); err != nil {
		return err
	}
	res, err := s.tasks.Retry(c.Request().Context(), project(c), c.Param("task_id"), b.Targets)
	if err != nil {
		return batchTaskError(err)
	}
	out := make([]batchTargetResult, 0, len(res))
	for _, r := range res {
		v := batchTargetResult{Target: r.Target, Status: "success"}
		if r.Err != nil {
			v.Status = "failure"
			var nf *batchtask.NotFoundError
			var ns *batchtask.NotFailedError
			switch {
			case errors.As(r.Err, &nf):
				v.ErrorCode, v.ErrorMsg = codeBatchTaskNotFound, nf.Error()
			case errors.As(r.Err, &ns):
				v.ErrorCode, v.ErrorMsg = codeBatchTaskState, ns.Error()
			default:
				d := DescribeItemError(r.Err)
				v.ErrorCode, v.ErrorMsg = d.Code, d.Msg
			}
		}
		out = append(out, v)
	}
	return c.JSON(http.StatusOK, map[string]any{"targets": out})
}
